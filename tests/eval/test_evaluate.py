"""evaluate_reconstruction invariants with a lossless reference tokenizer, outputs, and bad input."""

import json
import math
import zipfile

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

import mmtok

from mmtok.data import open_image_dataset, to_uint8
from mmtok.metrics import evaluate_reconstruction


def _real_uint8(ds, n):
    return torch.stack([to_uint8(ds[i]["x"][None])[0] for i in range(n)])


def test_lossless_tokenizer_scores_perfectly(pixel_tokenizer, inception_weights, tmp_path):
    ds = open_image_dataset("synthetic:2", 32)
    rep = evaluate_reconstruction(
        pixel_tokenizer, ds, batch_size=2, inception_weights=inception_weights, lpips="random",
        prefix_lengths=None, out_dir=tmp_path / "out", cache_dir=tmp_path / "cache", progress=False,
    )
    m = rep["metrics"]
    assert abs(m["rfid"]) < 1e-6  # identical features: FID of a set against itself
    assert m["psnr"] == 100.0 and m["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert m["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert m["tokens_per_image"] == 3072 and m["bits_per_pixel"] == pytest.approx(24.0)
    # dataset-level codebook statistics == histogram of all sub-pixel values
    vals = _real_uint8(ds, 2).flatten().long()
    counts = torch.bincount(vals, minlength=256).double()
    p = counts[counts > 0] / counts.sum()
    cb = rep["codebook"]
    assert cb["codes_counted"] == vals.numel()
    assert cb["usage"] == pytest.approx(float((counts > 0).sum()) / 256)
    assert cb["entropy_bits"] == pytest.approx(float(-(p * p.log2()).sum()))
    assert cb["perplexity"] == pytest.approx(2 ** cb["entropy_bits"])
    assert rep["reference_stats"]["source"].startswith("computed")
    # ADM-compatible npz holds exactly the reconstructions (== originals here), keys in order
    arr = np.load(tmp_path / "out" / "reconstructions.npz")["arr_0"]
    assert arr.dtype == np.uint8 and arr.shape == (2, 32, 32, 3)
    with zipfile.ZipFile(tmp_path / "out" / "reconstructions.npz") as zf, zf.open("arr_0.npy") as f:
        assert np.lib.format.read_magic(f) == (1, 0)  # the header version the ADM evaluator streams
    np.testing.assert_array_equal(arr, _real_uint8(ds, 2).permute(0, 2, 3, 1).numpy())
    keys = (tmp_path / "out" / "reconstructions_keys.txt").read_text().split()
    assert keys == [ds[i]["key"] for i in range(2)]
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["protocol"]["id"] == rep["protocol"]["id"] and saved["metrics"]["psnr"] == 100.0
    assert "rFID" in (tmp_path / "out" / "report.md").read_text()
    # a second run reuses the cached reference statistics and gives the same rFID
    again = evaluate_reconstruction(pixel_tokenizer, ds, batch_size=2, inception_weights=inception_weights, lpips=None,
                                    prefix_lengths=None, cache_dir=tmp_path / "cache", progress=False)
    assert again["reference_stats"]["source"].startswith("cached")
    assert again["metrics"]["rfid"] == pytest.approx(m["rfid"], abs=1e-9)
    assert again["reference_stats"]["key"] == rep["reference_stats"]["key"]
    # external reference statistics (e.g. an ADM reference batch): same numbers, recorded in the protocol
    ref_file = tmp_path / "cache" / f"{rep['reference_stats']['key']}.npz"
    ext = evaluate_reconstruction(pixel_tokenizer, ds, batch_size=2, inception_weights=inception_weights, lpips=None,
                                  prefix_lengths=None, reference_stats=ref_file, progress=False)
    assert ext["metrics"]["rfid"] == pytest.approx(m["rfid"], abs=1e-9)
    assert ext["protocol"]["reference"]["path"] == str(ref_file.resolve())
    assert ext["reference_stats"]["source"].startswith("external")
    np.savez(tmp_path / "small.npz", mu=np.zeros(64), sigma=np.eye(64))
    with pytest.raises(ValueError, match="2048"):
        evaluate_reconstruction(pixel_tokenizer, ds, inception_weights=inception_weights, lpips=None,
                                prefix_lengths=None, reference_stats=tmp_path / "small.npz", progress=False)


def test_prefix_quality_grows_with_tokens(pixel_tokenizer, tmp_path):
    ds = open_image_dataset("synthetic:3", 32)
    rep = evaluate_reconstruction(
        pixel_tokenizer, ds, batch_size=2, fid=False, lpips=None, prefix_lengths=[768, 1536, 2304],
        out_dir=tmp_path, save_npz=False, progress=False,
    )
    rows = rep["prefix"]
    assert [r["tokens"] for r in rows] == [768, 1536, 2304, 3072]  # the full length is always added
    psnr = [r["psnr"] for r in rows]
    ssim = [r["ssim"] for r in rows]
    assert psnr == sorted(psnr) and len(set(psnr)) == 4 and psnr[-1] == 100.0
    assert ssim == sorted(ssim) and ssim[-1] == pytest.approx(1.0, abs=1e-6)
    assert [r["bits_per_pixel"] for r in rows] == pytest.approx([6.0, 12.0, 18.0, 24.0])
    assert rep["metrics"]["psnr"] == rows[-1]["psnr"]
    assert (tmp_path / "prefix_curve.png").stat().st_size > 1000
    assert "Quality vs number of tokens" in (tmp_path / "report.md").read_text()
    assert not (tmp_path / "reconstructions.npz").exists()


@pytest.mark.parametrize("name", ["titok_t32_fsq", "vqgan_t_f8_vq"])
def test_metrics_match_direct_computation(tmp_path, name):
    """Lossy 1D and 2D tokenizers: report PSNR/SSIM equal per-image metrics on the saved reconstructions."""
    from mmtok.metrics.image import psnr_per_image, ssim_per_image

    tok = mmtok.create_tokenizer(name).eval()
    ds = open_image_dataset("synthetic:5", 32)
    rep = evaluate_reconstruction(tok, ds, batch_size=2, fid=False, lpips=None, out_dir=tmp_path, progress=False)
    rec = torch.from_numpy(np.load(tmp_path / "reconstructions.npz")["arr_0"]).permute(0, 3, 1, 2)
    real = _real_uint8(ds, 5)
    assert rep["metrics"]["psnr"] == pytest.approx(psnr_per_image(rec, real).mean().item(), rel=1e-5)
    assert rep["metrics"]["ssim"] == pytest.approx(ssim_per_image(rec, real).mean().item(), rel=1e-5)
    assert rep["prefix"] == [] and rep["metrics"]["rfid"] is None
    assert rep["throughput"]["encode_images_per_s"] > 0 and rep["throughput"]["decode_images_per_s"] > 0
    assert rep["metrics"]["bits_per_pixel"] == pytest.approx(tok.bits_per_item / 1024)
    assert rep["tokenizer"]["token_shape"] == list(tok.token_shape)
    assert rep["codebook"]["codes_counted"] == 5 * tok.num_tokens


class _Empty(Dataset):
    def __len__(self):
        return 0

    def __getitem__(self, i):
        raise IndexError(i)


def test_bad_input(pixel_tokenizer, tmp_path):
    ds = open_image_dataset("synthetic:4", 64)
    with pytest.raises(ValueError, match=r"64x64 images but the tokenizer expects 32x32"):
        evaluate_reconstruction(pixel_tokenizer, ds, fid=False, lpips=None, progress=False)
    with pytest.raises(ValueError, match="empty"):
        evaluate_reconstruction(pixel_tokenizer, _Empty(), fid=False, lpips=None)
    with pytest.raises(ValueError, match="holds only 4"):
        evaluate_reconstruction(pixel_tokenizer, ds, num_images=10, fid=False, lpips=None)
    with pytest.raises(ValueError, match="no rate ladder"):
        evaluate_reconstruction(mmtok.create_tokenizer("titok_t32_fsq"), open_image_dataset("synthetic:2", 32),
                                prefix_lengths=[4], fid=False, lpips=None)
    with pytest.raises(ValueError, match="prefix lengths"):
        evaluate_reconstruction(pixel_tokenizer, open_image_dataset("synthetic:2", 32), prefix_lengths=[0, 4], fid=False, lpips=None)
    pixel_tokenizer.modality = "tactile"
    with pytest.raises(ValueError, match="no metric suite for 'tactile'"):
        evaluate_reconstruction(pixel_tokenizer, ds, fid=False, lpips=None)


def test_unreadable_files_are_skipped_and_listed(pixel_tokenizer, tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(3):
        Image.fromarray((np.random.default_rng(i).random((40, 40, 3)) * 255).astype(np.uint8)).save(root / f"{i}.png")
    (root / "broken.png").write_bytes(b"not a png")
    ds = open_image_dataset(str(root), 32)
    rep = evaluate_reconstruction(pixel_tokenizer, ds, batch_size=2, fid=False, lpips=None, prefix_lengths=None,
                                  out_dir=tmp_path / "out", progress=False)
    assert rep["num_images"] == 3
    assert len(rep["skipped"]) == 1 and "broken.png" in rep["skipped"][0][0]
    assert np.load(tmp_path / "out" / "reconstructions.npz")["arr_0"].shape[0] == 3
    assert math.isclose(rep["metrics"]["psnr"], 100.0)
