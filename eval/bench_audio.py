"""Audio codec benchmark: speed, memory, streaming, long files and quality vs trivial baselines.

Everything is measured side by side in one run and printed as Markdown tables:

1. throughput  encode / decode real-time factor (RTF = seconds of audio per second of compute;
               > 1 is faster than real time) and peak memory of every preset, batch 1 and 8
               of 1 s clips. CPU fp32 always; with CUDA also fp32 and bf16 autocast on the GPU.
               Peak memory: CPU = peak RSS above the RSS before the call (Linux VmHWM, reset
               through /proc/self/clear_refs; else a polling thread); CUDA = max allocated
               above the allocation before the call. Side by side, the reference codecs
               (random weights: speed only, nothing is downloaded; ``--references``):
               ``dac_24khz``     DAC 1.0.0, the 24 kHz release config (conf/final/24khz.yml:
                                 encoder_dim 64, rates 2,4,5,8, decoder_dim 1536, rates 8,5,4,2,
                                 32 codebooks x 1024, dim 8; hop 320 = 75 Hz), encoded with
                                 n_quantizers = 8: 6 kbps; decode = quantizer.from_codes + decoder
               ``dac_24khz_1q``  the same model at n_quantizers = 1 (0.75 kbps), the bitrate
                                 of the single-codebook presets
               ``encodec_24khz`` EnCodec 0.1.1 ``encodec_model_24khz(pretrained=False)``
                                 (causal, weight norm, LSTM) at bandwidth 6 kbps (8 codebooks)
               params: nn.Parameters (mmtok's codebooks are parameters; EnCodec's codebooks are
               buffers and are added: 32 x 1024 x 128). They import from ``--baselines`` (default
               ``.cache/bench-deps`` when it exists), put on sys.path only while they are built,
               never into the project's environment (audiotools would downgrade protobuf and
               tensorboard there):

    pip install --target .cache/bench-deps --no-deps descript-audio-codec==1.0.0 \\
        descript-audiotools==0.7.2 encodec==0.1.1 argbind==0.3.9 docstring-parser==0.18.0 \\
        flatten-dict==0.5.0 ffmpy==1.0.0 importlib-resources==7.1.0 julius==0.2.8 \\
        markdown-it-py==4.3.0 mdurl==0.1.2 randomname==0.2.1 rich==15.0.0

               (the extras are the pure-Python modules ``import dac`` needs; torch, numpy,
               tqdm, pyyaml, pygments, tensorboard come from the project's environment.)
               Without them the table has a "not installed" row per reference codec.
1b. vs_dac     ``rvq_codec_24k`` and DAC 24 kHz (8 codebooks, random weights) in one process:
               interleaved encode + decode pairs at batch 1 and 8 (``--pair-batches``), medians
               and the median per-pair speedup (DAC time / ours); target >= 1.1x.
2. streaming   causal tiny codecs pushed through ``stream_encoder`` / ``stream_decoder`` in
               chunks of 1, 4, 16 frames: RTF, compute per chunk, max |streamed - offline|,
               streamed codes == ``tok.encode`` and the algorithmic latency (``tok.latency``),
               and the overhead over offline (``tok.decode(tok.encode(x))`` of the same clip):
               the median over interleaved offline / streamed pairs of (streamed pass / offline) - 1.
               ``--stream-compile``: at 16 frames also ``compile=True`` streams against the offline
               path with the same ``torch.compile``-d stacks, in the same rounds (compiled vs
               compiled, and vs eager offline). ``--stream-big``: ``rvq_codec_24k`` built with
               ``causal=True`` (74 M params) at 16 frames, where compute dominates.
3. long files  ``encode_long`` / ``decode_long`` (10 s windows, 1 and 8 windows per batch) of a
               short and a long synthetic file (default 1 and 10 min): time, RTF, peak RSS, against
               a whole-file ``encode`` / ``decode`` of the short file (and that peak scaled to the
               long one), and the peak's growth per extra minute; then ``seam_report`` on a 30 s
               file (codes that differ from the whole-file encode, decode error near window
               boundaries vs elsewhere). Peak RSS counts what glibc keeps: with batches of many
               windows its heap retains freed activations, so RSS grows with the window count
               (``--mmap-threshold-kb 128`` shows live memory instead, at a large speed cost).
4. quality     mel / STFT distance, SI-SDR, PESQ-WB, STOI on N synthetic 0.5 s clips (seed 1,
               unseen by training on seed 0) for n_q = 1..Q: a trained codec (``--checkpoint``),
               the same architecture untrained (seed 0), and two trivial codecs at the same
               bitrate: downsample to r Hz + mu-law to b bits with r * b = kbps * 1000
               (b = 4, and b = 8: mostly a low-pass), upsampled back.

Then the targets, met / not met, from whatever was measured: single-codebook 24 kHz presets'
encode + decode speed >= 1.5x DAC's (at 0.75 kbps, else 6 kbps), 24 kHz RVQ presets >= 1.0x
DAC's at 6 kbps (params side by side), streaming overhead <= 10 % at 16-frame chunks, and peak
RSS flat on long files (windowed: the long file's peak within 1.25x the short file's, scaled by
the windows in flight, plus the grown input / output buffers and 32 MB of RSS noise; ``flatness``).

    python eval/bench_audio.py                           # all presets, about 10 min on 2 cores
    python eval/bench_audio.py --quick                   # tiny presets only (no references), about 1 min
    python eval/bench_audio.py --sections throughput --models rvq_codec_24k,istft_codec_24k_75hz
    python eval/bench_audio.py --checkpoint runs/audio_tiny/final --json bench_audio.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

import mmtok
from mmtok.audio import seam_report
from mmtok.data import SyntheticAudio, open_dataset
from mmtok.metrics.baselines import mulaw, mulaw_rate

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # eval/benchlib.py
from benchlib import _log, _sync, load_average, peak_memory, release_memory, set_mmap_threshold, table  # noqa: E402

PRESETS = [
    "rvq_codec_24k",
    "rvq_codec_16k_speech",
    "istft_codec_24k_75hz",
    "istft_codec_24k_40hz",
    "rvq_codec_tiny",
    "rvq_codec_tiny_causal",
    "istft_codec_tiny",
    "istft_codec_tiny_causal",
]
TINY = [p for p in PRESETS if "tiny" in p]
STREAMING = ["rvq_codec_tiny_causal", "istft_codec_tiny_causal"]
STREAMING_BIG = ["rvq_codec_24k"]  # built with causal=True; 16-frame chunks only (compute dominates)
LONG = ["rvq_codec_tiny", "istft_codec_tiny"]
CHUNK_FRAMES = (1, 4, 16)
MB = 2**20


# --- timing --------------------------------------------------------------------------------


@dataclass
class Measurement:
    seconds: float  # median seconds per call
    rtf: float  # audio seconds per compute second
    peak_mb: float
    repeats: int


def measure(fn: Callable[[], object], audio_seconds: float, device: torch.device, min_time: float = 1.0,
            min_repeats: int = 1, max_repeats: int = 20) -> Measurement:
    """Median time of ``fn`` (already warmed up) over at least ``min_repeats`` calls and until
    ``min_time`` has passed (at most ``max_repeats``); peak memory over all calls.
    ``audio_seconds``: audio handled by one call (batch included)."""
    times: list[float] = []
    with peak_memory(device) as mem:
        start = time.perf_counter()
        while len(times) < min_repeats or (time.perf_counter() - start < min_time and len(times) < max_repeats):
            t = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t)
    sec = statistics.median(times)
    return Measurement(sec, audio_seconds / sec, mem["mb"], len(times))


def clips(n: int, seconds: float, sample_rate: int, seed: int = 3) -> Tensor:
    """(n, 1, seconds * rate) synthetic clips (tones, chirps, noise, clicks)."""
    ds = SyntheticAudio(num_items=n, sample_rate=sample_rate, channels=1,
                                   segment_length=int(round(seconds * sample_rate)), seed=seed)
    return torch.stack([ds[i]["x"] for i in range(n)])


def long_file(seconds: float, sample_rate: int, item_seconds: float = 10.0, seed: int = 2) -> Tensor:
    """(1, S) file of ``seconds`` concatenated synthetic items of ``item_seconds``."""
    n = max(1, math.ceil(seconds / item_seconds))
    x = clips(n, item_seconds, sample_rate, seed).reshape(1, -1)
    return x[:, : int(round(seconds * sample_rate))].contiguous()


def _param_kbps(tok: Any) -> dict[str, Any]:
    return {"params_m": tok.num_parameters() / 1e6, "kbps": float(tok.kbps()), "sample_rate": tok.sample_rate,
            "frame_rate": float(tok.frame_rate), "levels": len(tok.codebook_sizes),
            "reference": isinstance(tok, ReferenceCodec)}


# --- reference codecs (DAC, EnCodec) -------------------------------------------------------
REFERENCES = ["dac_24khz", "dac_24khz_1q", "encodec_24khz"]
BASELINES_DIR = ".cache/bench-deps"
INSTALL_HINT = (f"pip install --target {BASELINES_DIR} --no-deps descript-audio-codec==1.0.0 "
                "descript-audiotools==0.7.2 encodec==0.1.1 ... ; see eval/bench_audio.py")


class ReferenceCodec:
    """A reference codec behind the part of the tokenizer interface the throughput section uses:
    ``encode`` (B, 1, S) -> codes, ``decode`` codes -> (B, 1, S'), rate, hop, bitrate, params."""

    def __init__(self, model: torch.nn.Module, sample_rate: int, hop_length: int, n_q: int,
                 codebook_size: int, extra_params: int = 0) -> None:
        self.model, self.sample_rate, self.hop_length = model.eval(), sample_rate, hop_length
        self.codebook_sizes = (codebook_size,) * n_q
        self.frame_rate = sample_rate / hop_length
        self._params = sum(p.numel() for p in model.parameters()) + extra_params

    def num_parameters(self) -> int:
        return self._params

    def kbps(self) -> float:
        return self.frame_rate * sum(math.log2(k) for k in self.codebook_sizes) / 1000

    def to(self, device: torch.device) -> "ReferenceCodec":
        self.model.to(device)
        return self

    def eval(self) -> "ReferenceCodec":
        self.model.eval()
        return self


class DACCodec(ReferenceCodec):
    def encode(self, x: Tensor) -> Tensor:
        m = self.model
        return m.quantizer(m.encoder(m.preprocess(x, self.sample_rate)), len(self.codebook_sizes))[1]

    def decode(self, codes: Tensor) -> Tensor:
        return self.model.decoder(self.model.quantizer.from_codes(codes)[0])


class EncodecCodec(ReferenceCodec):
    def encode(self, x: Tensor) -> list[tuple[Tensor, Tensor | None]]:
        return self.model.encode(x)

    def decode(self, frames: list[tuple[Tensor, Tensor | None]]) -> Tensor:
        return self.model.decode(frames)


@contextlib.contextmanager
def _on_sys_path(path: str | None) -> Iterator[None]:
    """``path`` first on sys.path inside the block only (the packages stay imported after it;
    descript-audio-codec also installs a top-level ``tests`` package that must not shadow ours)."""
    if not path or not os.path.isdir(path):
        yield
        return
    path = os.path.abspath(path)
    sys.path.insert(0, path)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(path)


def build_reference(name: str, baselines: str | None) -> ReferenceCodec | str:
    """Reference codec ``name`` (see ``REFERENCES``) with random weights (seed 0), or the reason
    it cannot be built: "not installed (...)" when its package does not import."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.nn.utils.weight_norm deprecation, audiotools' imports
        return _build_reference(name, baselines)


def _build_reference(name: str, baselines: str | None) -> ReferenceCodec | str:
    torch.manual_seed(0)
    with _on_sys_path(baselines):
        try:
            if name.startswith("dac_"):
                from dac.model.dac import DAC
            elif name.startswith("encodec_"):
                from encodec import EncodecModel
            else:
                return f"unknown reference codec (one of {', '.join(REFERENCES)})"
        except ImportError as e:
            where = f"not importable from {baselines}" if baselines and os.path.isdir(baselines) else "no --baselines dir"
            return f"not installed ({INSTALL_HINT}; {where}: {e})"
        except Exception as e:  # an incompatible version: report it, do not fail the benchmark
            return f"import failed ({type(e).__name__}: {e}; {INSTALL_HINT})"
    if name in ("dac_24khz", "dac_24khz_1q"):
        # conf/final/24khz.yml of descript-audio-codec 1.0.0 (the released 24 kHz model)
        model = DAC(encoder_dim=64, encoder_rates=[2, 4, 5, 8], decoder_dim=1536, decoder_rates=[8, 5, 4, 2],
                    n_codebooks=32, codebook_size=1024, codebook_dim=8, quantizer_dropout=0.5, sample_rate=24000)
        return DACCodec(model, 24000, int(model.hop_length), 8 if name == "dac_24khz" else 1, 1024)
    if name == "encodec_24khz":
        model = EncodecModel.encodec_model_24khz(pretrained=False)  # architecture only: no download
        model.set_target_bandwidth(6.0)
        n_q = model.quantizer.get_num_quantizers_for_bandwidth(model.frame_rate, 6.0)
        codebooks = sum(b.numel() for k, b in model.named_buffers() if k.endswith("_codebook.embed"))
        return EncodecCodec(model, model.sample_rate, int(model.encoder.hop_length), n_q,
                            model.quantizer.bins, codebooks)
    return f"unknown reference codec (one of {', '.join(REFERENCES)})"


# --- 1. throughput -------------------------------------------------------------------------
def bench_codec(tok: Any, batch: int, seconds: float, device: torch.device, precision: str = "fp32",
                min_time: float = 1.0, min_repeats: int = 3, max_repeats: int = 20) -> dict[str, Any]:
    """Encode / decode RTF and peak memory of ``tok`` on ``batch`` clips of ``seconds``.
    Warm-up on a short clip of the same batch (cheap for the large models)."""
    x = clips(batch, seconds, tok.sample_rate).to(device)
    warm = x[..., : max(tok.hop_length * 8, int(0.1 * tok.sample_rate))]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    with torch.inference_mode(), autocast:
        tok.decode(tok.encode(warm))
        codes = tok.encode(x)
        _sync(device)
        enc = measure(lambda: tok.encode(x), batch * seconds, device, min_time, min_repeats, max_repeats)
        dec = measure(lambda: tok.decode(codes), batch * seconds, device, min_time, min_repeats, max_repeats)
    return {"device": device.type, "precision": precision, "batch": batch, "seconds": seconds,
            "encode": asdict(enc), "decode": asdict(dec)}


def section_throughput(names: list[str], devices: list[torch.device], batches: tuple[int, ...], seconds: float,
                       min_time: float, big_min_time: float, references: tuple[str, ...] = (),
                       baselines: str | None = None) -> list[dict[str, Any]]:
    """Every preset, then every reference codec (``build_reference``), x device x precision x
    batch. Models over 10M parameters: 1 timed call, a second when the first took under
    ``big_min_time``; the others: median of >= 3 calls. A reference that cannot be built
    gives one row ``{"model", "reference": True, "missing": reason}``."""
    rows: list[dict[str, Any]] = []
    for name in [*names, *references]:
        if name in references:
            tok = build_reference(name, baselines)
            if isinstance(tok, str):
                rows.append({"model": name, "reference": True, "missing": tok})
                _log(f"  {name}: {tok}")
                continue
        else:
            torch.manual_seed(0)
            tok = mmtok.create_tokenizer(name).eval()
        big = tok.num_parameters() > 10e6
        for device in devices:
            tok.to(device)
            for precision in ["fp32"] + (["bf16"] if device.type == "cuda" else []):
                for b in batches:
                    timing = (big_min_time, 1, 2) if big else (min_time, 3, 20)
                    r = bench_codec(tok, b, seconds, device, precision, *timing)
                    rows.append({"model": name, **_param_kbps(tok), **r})
                    _log(f"  {name} {device.type} {precision} b{b}: enc RTF {r['encode']['rtf']:.1f}, "
                         f"dec RTF {r['decode']['rtf']:.1f}")
        del tok
        release_memory()
    return rows


PAIRS = (("rvq_codec_24k", "dac_24khz"),)  # (preset, reference codec) timed side by side


def section_vs_reference(batches: tuple[int, ...], seconds: float, repeats: int,
                         baselines: str | None) -> list[dict[str, Any]]:
    """Each ``PAIRS`` preset against its reference codec in one process: ``repeats`` interleaved
    pairs of encode + decode (alternating which runs first), medians; ``speedup`` = median of
    the per-pair ratios reference time / preset time (> 1: the preset is faster)."""
    rows: list[dict[str, Any]] = []
    for name, ref_name in PAIRS:
        ref = build_reference(ref_name, baselines)
        if isinstance(ref, str):
            rows.append({"model": name, "reference": ref_name, "missing": ref})
            continue
        torch.manual_seed(0)
        tok = mmtok.create_tokenizer(name).eval()
        for b in batches:
            x = clips(b, seconds, tok.sample_rate)
            with torch.inference_mode():
                ours, theirs = [], []
                for m in (tok, ref):
                    m.decode(m.encode(x[..., : tok.sample_rate // 10]))  # warm-up

                def run(m: Any, out: list[float]) -> None:
                    t = time.perf_counter()
                    m.decode(m.encode(x))
                    out.append(time.perf_counter() - t)

                for r in range(repeats):
                    pair = ((tok, ours), (ref, theirs)) if r % 2 == 0 else ((ref, theirs), (tok, ours))
                    for m, out in pair:
                        run(m, out)
            row = {"model": name, "reference": ref_name, "batch": b, "seconds": seconds, "pairs": repeats,
                   "params_m": tok.num_parameters() / 1e6, "ref_params_m": ref.num_parameters() / 1e6,
                   "ms": 1000 * statistics.median(ours), "ref_ms": 1000 * statistics.median(theirs),
                   "speedup": statistics.median(t / o for o, t in zip(ours, theirs))}
            rows.append(row)
            _log(f"  {name} vs {ref_name} batch {b}: {row['ms']:.0f} vs {row['ref_ms']:.0f} ms, {row['speedup']:.2f}x")
        del tok, ref
        release_memory()
    return rows


def render_vs_reference(rows: list[dict[str, Any]]) -> str:
    head = ["model", "reference", "batch", "params (M)", "ref params (M)", "enc+dec ms", "ref enc+dec ms",
            "speedup (ref / ours)", "pairs"]
    body = []
    for r in rows:
        if "missing" in r:
            body.append([r["model"], r["reference"], r["missing"]] + [""] * (len(head) - 3))
            continue
        body.append([r["model"], r["reference"], r["batch"], f"{r['params_m']:.1f}", f"{r['ref_params_m']:.1f}",
                     f"{r['ms']:.0f}", f"{r['ref_ms']:.0f}", f"{r['speedup']:.2f}x", r["pairs"]])
    return table(head, body)


def render_throughput(rows: list[dict[str, Any]]) -> str:
    head = ["model", "device", "prec", "batch", "params (M)", "kbps", "enc RTF", "dec RTF", "enc peak MB",
            "dec peak MB", "enc ms/call", "dec ms/call", "repeats"]
    head.insert(8, "enc+dec RTF")
    body = []
    for r in rows:
        label = f"{r['model']} (reference)" if r.get("reference") else r["model"]
        if "missing" in r:
            body.append([label, r["missing"]] + [""] * (len(head) - 2))
            continue
        body.append([label, r["device"], r["precision"], r["batch"], f"{r['params_m']:.1f}", f"{r['kbps']:.2f}",
                     f"{r['encode']['rtf']:.1f}", f"{r['decode']['rtf']:.1f}", f"{round_trip_rtf(r):.1f}",
                     f"{r['encode']['peak_mb']:.0f}", f"{r['decode']['peak_mb']:.0f}",
                     f"{1000 * r['encode']['seconds']:.0f}", f"{1000 * r['decode']['seconds']:.0f}",
                     f"{r['encode']['repeats']}/{r['decode']['repeats']}"])
    return table(head, body)


def round_trip_rtf(row: dict[str, Any]) -> float:
    """Encode + decode RTF: audio seconds per second of encode and decode together."""
    return row["batch"] * row["seconds"] / (row["encode"]["seconds"] + row["decode"]["seconds"])


# --- 2. streaming --------------------------------------------------------------------------
def stream_pass(tok: Any, x: Tensor, chunk_frames: int, compile: bool = False) -> tuple[Tensor, Tensor, list[float]]:
    """Stream ``x`` (B, C, S) through encoder and decoder in chunks of ``chunk_frames`` frames:
    (codes, waveform, seconds of each push pair). ``compile``: ``stream_encoder(compile=True)``
    / ``stream_decoder(compile=True)`` (steady chunks run the compiled stacks)."""
    step = chunk_frames * tok.hop_length
    enc, dec = tok.stream_encoder(compile=compile), tok.stream_decoder(compile=compile)
    codes, wavs, times = [], [], []
    for i in range(0, x.shape[-1], step):
        t = time.perf_counter()
        c = enc.push(x[..., i : i + step])
        wavs.append(dec.push(c))
        times.append(time.perf_counter() - t)
        codes.append(c)
    t = time.perf_counter()
    c = enc.flush()
    codes.append(c)
    wavs.append(dec.push(c))
    wavs.append(dec.flush())
    times.append(time.perf_counter() - t)
    return torch.cat(codes, 1), torch.cat(wavs, -1), times


def offline_pass(tok: Any, x: Tensor, compile: bool = False) -> Tensor:
    """The offline round trip: ``tok.decode(tok.encode(x))``; ``compile``: the same steps with
    the encoder / decoder stacks through the same ``torch.compile``-d functions the compiled
    stream uses (``mmtok.audio.streaming.compiled``), at the whole clip's shape; the checks
    and the quantizer stay eager, as in the stream."""
    if not compile:
        return tok.decode(tok.encode(x))
    from mmtok.audio.streaming import compiled

    codes = tok.quantize_latent(compiled("encoder")(tok, tok._prepare(x, None, False)))
    return compiled("decoder")(tok, tok.dequantize(tok.check_codes(codes)))


def bench_stream(tok: Any, x: Tensor, chunk_frames: int, repeats: int = 7,
                 compile: bool = False) -> list[dict[str, Any]]:
    """Streaming vs the offline round trip ``tok.decode(tok.encode(x))`` on ``x`` (B, C, S),
    side by side: ``repeats`` rounds of interleaved offline / streamed passes (the order rotates
    each round), medians; the overhead is the median of the per-round ratios (whole streamed
    pass / offline) minus 1. One row eager vs eager; with ``compile`` a second row, the
    compiled stream vs the offline path compiled the same way (``offline_pass``), timed in the
    same rounds, with the compiled stream's ratio to the eager offline pass too."""
    step = chunk_frames * tok.hop_length
    modes = [False, True] if compile else [False]
    with torch.inference_mode():
        ref_codes = tok.encode(x)
        ref_wav = tok.decode(ref_codes)
        compile_s = {}
        for m in modes:  # warm-up (and the compiles, timed)
            t = time.perf_counter()
            offline_pass(tok, x, m)
            stream_pass(tok, x, chunk_frames, m)
            compile_s[m] = time.perf_counter() - t
        off = {m: [] for m in modes}
        on = {m: [] for m in modes}
        pushes = {m: [] for m in modes}
        outs: dict[bool, tuple[Tensor, Tensor]] = {}

        def offline(m: bool) -> None:
            t = time.perf_counter()
            offline_pass(tok, x, m)
            off[m].append(time.perf_counter() - t)

        def streamed(m: bool) -> None:
            t = time.perf_counter()
            codes_s, wav_s, times = stream_pass(tok, x, chunk_frames, m)
            on[m].append(time.perf_counter() - t)
            pushes[m].extend(times[:-1])
            outs[m] = (codes_s, wav_s)

        fns = [(f, m) for m in modes for f in (offline, streamed)]
        for r in range(repeats):
            k = r % len(fns)
            for f, m in fns[k:] + fns[:k]:
                f(m)
    audio_s = x.shape[0] * x.shape[-1] / tok.sample_rate
    rows = []
    for m in modes:
        codes_s, wav_s = outs[m]
        same_len = wav_s.shape == ref_wav.shape
        median = statistics.median(pushes[m])
        rows.append({
            "compiled": m,
            "chunk_frames": chunk_frames,
            "chunk_ms": 1000 * step / tok.sample_rate,
            "chunks": len(pushes[m]) // repeats,
            "pairs": repeats,
            "rtf": x.shape[0] * step / tok.sample_rate / median,  # steady state: median push
            "rtf_wall": audio_s / statistics.median(on[m]),
            "offline_rtf": audio_s / statistics.median(off[m]),
            "overhead": statistics.median(b / a for a, b in zip(off[m], on[m])) - 1,
            "overhead_vs_eager_offline": statistics.median(b / a for a, b in zip(off[False], on[m])) - 1,
            "ms_per_chunk": 1000 * median,
            "ms_per_chunk_max": 1000 * max(pushes[m]),
            "max_abs_err": float((wav_s - ref_wav).abs().max()) if same_len else math.inf,
            "codes_equal": bool(codes_s.shape == ref_codes.shape and torch.equal(codes_s, ref_codes)),
            "latency_ms": float(tok.latency["ms"]),
            "warmup_s": compile_s[m],  # first offline + streamed pass: includes the compiles
        })
    return rows


def section_streaming(names: list[str], seconds: float, repeats: int = 7, compile: bool = False,
                      big: list[str] | None = None, big_repeats: int = 3) -> list[dict[str, Any]]:
    """Each causal codec in chunks of ``CHUNK_FRAMES`` against its offline round trip, measured
    in interleaved rounds (``bench_stream``); with ``compile``, the ``STREAM_CHUNK`` rows also
    compiled vs compiled. ``big``: presets built with ``causal=True`` at a real size, at
    ``STREAM_CHUNK`` only (``big_repeats`` rounds)."""
    rows = []
    jobs = [(n, n, {}, CHUNK_FRAMES, repeats) for n in names]
    jobs += [(f"{n} (causal=True)", n, {"causal": True}, (STREAM_CHUNK,), big_repeats) for n in big or []]
    for label, name, kw, chunks, reps in jobs:
        torch.manual_seed(0)
        tok = mmtok.create_tokenizer(name, **kw).eval()
        params_m = sum(p.numel() for p in tok.parameters()) / 1e6
        x = clips(1, seconds, tok.sample_rate, seed=4)
        for k in chunks:
            for r in bench_stream(tok, x, k, reps, compile=compile and k == STREAM_CHUNK):
                rows.append({"model": label, "params_m": params_m, "seconds": seconds, **r})
                _log(f"  {label}{' compiled' if r['compiled'] else ''} chunk {k}: RTF {r['rtf_wall']:.1f} (offline "
                     f"{r['offline_rtf']:.1f}, overhead {100 * r['overhead']:+.0f} %), err {r['max_abs_err']:.2e}, "
                     f"warm-up {r['warmup_s']:.0f} s")
    return rows


def render_streaming(rows: list[dict[str, Any]]) -> str:
    head = ["model", "params (M)", "path", "chunk (frames)", "chunk (ms)", "streamed RTF (whole pass)", "offline RTF",
            "overhead", "vs eager offline", "rounds", "RTF per push (median)", "compute ms/chunk", "max ms/chunk",
            "max |stream - offline|", "codes equal", "algorithmic latency (ms)", "warm-up (s)"]
    body = [[r["model"], f"{r['params_m']:.1f}", "compiled" if r["compiled"] else "eager", r["chunk_frames"],
             f"{r['chunk_ms']:.0f}", f"{r['rtf_wall']:.2f}", f"{r['offline_rtf']:.2f}",
             f"{100 * r['overhead']:+.0f} %", f"{100 * r['overhead_vs_eager_offline']:+.0f} %", r["pairs"],
             f"{r['rtf']:.2f}", f"{r['ms_per_chunk']:.1f}", f"{r['ms_per_chunk_max']:.0f}", f"{r['max_abs_err']:.1e}",
             "yes" if r["codes_equal"] else "NO", f"{r['latency_ms']:.1f}", f"{r['warmup_s']:.1f}"] for r in rows]
    return table(head, body)


# --- 3. long files -------------------------------------------------------------------------
def bench_long(tok: Any, wav: Tensor, chunk_seconds: float = 10.0, batch_size: int = 8) -> dict[str, Any]:
    """``encode_long`` + ``decode_long`` of one (C, S) file: seconds, RTF, peak RSS (MB)."""
    cpu = torch.device("cpu")
    secs = wav.shape[-1] / tok.sample_rate
    with torch.inference_mode():
        codes: list[Tensor] = []
        enc = measure(lambda: codes.append(tok.encode_long(wav, chunk_seconds=chunk_seconds, batch_size=batch_size)),
                      secs, cpu, 0.0, 1)
        c = codes[-1]
        del codes
        dec = measure(lambda: tok.decode_long(c, batch_size=batch_size), secs, cpu, 0.0, 1)
    return {"seconds": secs, "file_mb": wav.numel() * 4 / MB, "encode": asdict(enc), "decode": asdict(dec)}


def bench_whole(tok: Any, wav: Tensor) -> dict[str, Any]:
    """Whole-file ``encode`` + ``decode`` of one (C, S) file."""
    cpu = torch.device("cpu")
    secs = wav.shape[-1] / tok.sample_rate
    with torch.inference_mode():
        codes = tok.encode(wav[None])
        release_memory()
        enc = measure(lambda: tok.encode(wav[None]), secs, cpu, 0.0, 1)
        dec = measure(lambda: tok.decode(codes), secs, cpu, 0.0, 1)
    return {"seconds": secs, "file_mb": wav.numel() * 4 / MB, "encode": asdict(enc), "decode": asdict(dec)}


def encode_windows(tok: Any, wav: Tensor, chunk_seconds: float = 10.0) -> int:
    """Windows ``encode_long`` cuts a (C, S) file into (default overlap)."""
    from mmtok.audio.long import default_overlap, plan_windows

    chunk = max(1, math.ceil(chunk_seconds * tok.frame_rate - 1e-9))
    total = math.ceil(wav.shape[-1] / tok.hop_length)
    return len(plan_windows(total, chunk, min(default_overlap(tok), chunk // 2), tok.causal)[0])


def section_long(names: list[str], short_s: float, long_s: float, seam_s: float,
                 batch_sizes: tuple[int, ...] = (1, 8)) -> dict[str, Any]:
    """Whole-file vs windowed (each of ``batch_sizes`` windows at a time) on a short and a long
    file, then the seam report (at the largest batch size) on a ``seam_s`` file."""
    rows, seams = [], []
    for name in names:
        torch.manual_seed(0)
        tok = mmtok.create_tokenizer(name).eval()
        sr = tok.sample_rate
        with torch.inference_mode():
            tok.decode_long(tok.encode_long(long_file(12, sr)))  # warm-up
        short = long_file(short_s, sr)
        whole = bench_whole(tok, short)
        rows.append({"model": name, "mode": "whole", **whole})
        _log(f"  {name} whole {short_s:.0f} s: enc {whole['encode']['peak_mb']:.0f} MB, dec {whole['decode']['peak_mb']:.0f} MB")
        for secs in (short_s, long_s):
            wav = short if secs == short_s else long_file(secs, sr)
            for b in batch_sizes:
                r = bench_long(tok, wav, batch_size=b)
                rows.append({"model": name, "mode": "windowed", "batch_size": b, "windows": encode_windows(tok, wav),
                             **r})
                _log(f"  {name} windowed {secs:.0f} s, batch {b}: enc RTF {r['encode']['rtf']:.1f} "
                     f"({r['encode']['peak_mb']:.0f} MB), dec RTF {r['decode']['rtf']:.1f} ({r['decode']['peak_mb']:.0f} MB)")
                release_memory()
            del wav
            release_memory()
        with torch.inference_mode():
            rep = seam_report(tok, long_file(seam_s, sr, seed=5), batch_size=max(batch_sizes))
        seams.append({"model": name, "seconds": seam_s, **rep})
        _log(f"  {name} seams: {rep['differing_codes']} codes differ, decode err boundary "
             f"{rep['decode_max_err_boundary']:.1e} / interior {rep['decode_max_err_interior']:.1e}")
    return {"rows": rows, "seams": seams, "short_seconds": short_s, "long_seconds": long_s,
            "batch_sizes": list(batch_sizes)}


def render_long(res: dict[str, Any]) -> str:
    head = ["model", "mode", "file (s)", "file MB", "enc s", "enc RTF", "enc peak MB", "dec s", "dec RTF",
            "dec peak MB"]
    body = []
    scale = res["long_seconds"] / res["short_seconds"]
    for r in res["rows"]:
        e, d = r["encode"], r["decode"]
        body.append([r["model"], "whole file" if r["mode"] == "whole" else f"windowed, batch {r['batch_size']}",
                     f"{r['seconds']:.0f}", f"{r['file_mb']:.1f}", f"{e['seconds']:.2f}", f"{e['rtf']:.0f}",
                     f"{e['peak_mb']:.0f}", f"{d['seconds']:.2f}", f"{d['rtf']:.0f}", f"{d['peak_mb']:.0f}"])
        if r["mode"] == "whole":
            body.append([r["model"], f"whole file, x{scale:.0f} (estimate)", f"{res['long_seconds']:.0f}",
                         f"{r['file_mb'] * scale:.1f}", "", "", f"{e['peak_mb'] * scale:.0f}", "", "",
                         f"{d['peak_mb'] * scale:.0f}"])
    return table(head, body) + "\n\n" + growth_note(res)


FLAT_SLACK, FLAT_NOISE_MB = 1.25, 32.0


def flatness(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Per model and batch size b, is the windowed peak flat in the file length? The long file's
    peak (encode, decode) must stay under ``FLAT_SLACK`` x the short file's peak x the batch fill
    ``min(b, long windows) / min(b, short windows)`` (windows in flight at once), plus twice the
    extra file size (the input and output buffers that must grow) plus ``FLAT_NOISE_MB`` of RSS
    noise. A whole-file pass, for contrast, grows in proportion to the length."""
    out = []
    for name in dict.fromkeys(r["model"] for r in res["rows"]):
        for b in res["batch_sizes"]:
            short, long_ = [r for r in res["rows"] if r["model"] == name and r.get("batch_size") == b]
            sw, lw = short.get("windows", b), long_.get("windows", b)
            fill = min(b, lw) / min(b, sw)
            extra_mb = long_["file_mb"] - short["file_mb"]
            row: dict[str, Any] = {"model": name, "batch_size": b, "fill": fill, "short_windows": sw, "long_windows": lw}
            for key in ("encode", "decode"):
                allowed = FLAT_SLACK * fill * max(short[key]["peak_mb"], 0.0) + 2 * extra_mb + FLAT_NOISE_MB
                row[key] = {"short_mb": short[key]["peak_mb"], "long_mb": long_[key]["peak_mb"], "allowed_mb": allowed}
            row["flat"] = all(row[k]["long_mb"] <= row[k]["allowed_mb"] for k in ("encode", "decode"))
            out.append(row)
    return out


def growth_note(res: dict[str, Any]) -> str:
    """Peak-memory growth per extra minute of audio, windowed vs whole file (bounded = small slope)."""
    minutes = (res["long_seconds"] - res["short_seconds"]) / 60
    lines = []
    for name in dict.fromkeys(r["model"] for r in res["rows"]):
        whole = next(r for r in res["rows"] if r["model"] == name and r["mode"] == "whole")
        per_min = 60 / whole["seconds"]
        growth = []
        for b in res["batch_sizes"]:
            short, long_ = [r for r in res["rows"] if r["model"] == name and r.get("batch_size") == b]
            enc = (long_["encode"]["peak_mb"] - short["encode"]["peak_mb"]) / minutes
            dec = (long_["decode"]["peak_mb"] - short["decode"]["peak_mb"]) / minutes
            growth.append(f"windowed batch {b} {enc:.0f} / {dec:.0f}")
        lines.append(
            f"- {name}: peak growth (encode / decode) per extra minute of audio, MB: {', '.join(growth)}; "
            f"whole file {whole['encode']['peak_mb'] * per_min:.0f} / {whole['decode']['peak_mb'] * per_min:.0f}; "
            f"the file itself {whole['file_mb'] * per_min:.1f}"
        )
    return "\n".join(lines)


def render_seams(seams: list[dict[str, Any]]) -> str:
    head = ["model", "file (s)", "windows", "overlap (frames)", "codes differing", "fraction", "frames near cuts",
            "frames interior", "dec max err @boundary", "dec max err interior", "dec rms err"]
    body = [[s["model"], f"{s['seconds']:.0f}", s["windows"], s["overlap_frames"], s["differing_codes"],
             f"{s['differing_fraction']:.2e}", s["differing_frames_near_cuts"], s["differing_frames_interior"],
             f"{s['decode_max_err_boundary']:.1e}", f"{s['decode_max_err_interior']:.1e}",
             f"{s['decode_rms_err']:.1e}"] for s in seams]
    return table(head, body)


# --- 4. quality vs trivial baselines ---------------------------------------------------------
def baseline_rate(kbps: float, bits: int) -> int:
    return mulaw_rate(kbps, bits)


def mulaw_baseline(x: Tensor, sample_rate: int, kbps: float, bits: int) -> Tensor:
    return mulaw(x, sample_rate, kbps, bits)


def quality(est: Tensor, ref: Tensor, sample_rate: int) -> dict[str, float]:
    """Mean metrics over the batch (PESQ / STOI: over the items they can score, counted)."""
    from mmtok.metrics.audio import quality as q

    out = {"mel": float(q.mel_distance(est, ref, sample_rate).mean()), "stft": float(q.stft_distance(est, ref).mean()),
           "si_sdr": float(q.si_sdr(est, ref).mean()),
           "rms_ratio": float(est.pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-12))}
    for key, fn in (("pesq", q.pesq_wb), ("stoi", q.stoi)):
        v = fn(est, ref, sample_rate)
        ok = torch.isfinite(v)
        out[key] = float(v[ok].mean()) if ok.any() else math.nan
        out[f"{key}_n"] = int(ok.sum())
    return out


def _levels(tok: Any) -> list[int | None]:
    return list(range(1, len(tok.codebook_sizes) + 1)) if tok.is_residual else [None]


def reconstruct(tok: Any, x: Tensor, n_q: int | None, batch_size: int = 16) -> Tensor:
    """Codec round trip of (N, C, S), cropped to S."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size]
            out.append(tok.decode(tok.encode(xb, n_q=n_q))[..., : xb.shape[-1]])
    return torch.cat(out)


def section_quality(checkpoint: str | None, arch: str, num_clips: int, seconds: float,
                    bits: tuple[int, ...] = (4, 8)) -> list[dict[str, Any]]:
    models: list[tuple[str, Any]] = []
    if checkpoint:
        trained = mmtok.load_tokenizer(checkpoint, modality="audio").eval()
        torch.manual_seed(0)
        untrained = type(trained)(trained.config).eval()
        models = [("trained", trained), ("untrained (seed 0)", untrained)]
    else:
        torch.manual_seed(0)
        models = [("untrained (seed 0)", mmtok.create_tokenizer(arch).eval())]
    ref_tok = models[0][1]
    sr = ref_tok.sample_rate
    ds = open_dataset(f"synthetic:{num_clips}", modality="audio", sample_rate=sr, channels=ref_tok.channels,
                                 segment_length=int(round(seconds * sr)), segment="start", seed=1)
    x = torch.stack([ds[i]["x"] for i in range(len(ds))])
    rows = [{"method": "silence (reference)", "n_q": None, "kbps": 0.0, **quality(torch.zeros_like(x), x, sr)}]
    for n_q in _levels(ref_tok):
        kbps = float(ref_tok.kbps(n_q))
        for label, tok in models:
            rows.append({"method": label, "n_q": n_q, "kbps": kbps, **quality(reconstruct(tok, x, n_q), x, sr)})
        for b in bits:
            r = baseline_rate(kbps, b)
            label = f"mu-law {b} bit @ {r} Hz" + (" (low-pass)" if b >= 8 else "")
            rows.append({"method": label, "n_q": n_q, "kbps": r * b / 1000,
                         **quality(mulaw_baseline(x, sr, kbps, b), x, sr)})
        _log(f"  n_q={n_q}: " + ", ".join(f"{r['method']} mel {r['mel']:.2f}" for r in rows if r["n_q"] == n_q))
    for r in rows:
        r.update(items=len(x), clip_seconds=seconds, sample_rate=sr)
    return rows


def render_quality(rows: list[dict[str, Any]]) -> str:
    head = ["n_q", "kbps", "method", "mel dist", "STFT dist", "SI-SDR (dB)", "PESQ-WB", "STOI", "RMS out/in"]

    def scored(r: dict[str, Any], key: str, fmt: str) -> str:
        return "n/a" if math.isnan(r[key]) else f"{r[key]:{fmt}} ({r[key + '_n']}/{r['items']})"

    body = [["-" if r["n_q"] is None else r["n_q"], f"{r['kbps']:.2f}", r["method"], f"{r['mel']:.3f}", f"{r['stft']:.3f}",
             f"{r['si_sdr']:.2f}", scored(r, "pesq", ".2f"), scored(r, "stoi", ".3f"), f"{r['rms_ratio']:.3f}"]
            for r in rows]
    return table(head, body)


# --- targets -------------------------------------------------------------------------------
SINGLE_VS_DAC = 1.5  # single-codebook encode + decode speed >= 1.5x DAC's
RVQ_VS_DAC = 1.0  # RVQ codec >= 1.0x DAC's at similar params
RVQ_VS_DAC_SIDE_BY_SIDE = 1.1  # the same, timed in interleaved pairs (section vs_dac)
STREAM_OVERHEAD = 0.10  # streaming RTF within 10 % of offline (16-frame chunks)
STREAM_CHUNK = 16


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _summary(title: str, oks: list[bool], missing: str) -> str:
    if not oks:
        return f"- {title}: not measured ({missing})"
    return f"- {title}: {_verdict(all(oks))} ({sum(oks)}/{len(oks)} comparisons)"


def render_targets(results: dict[str, Any]) -> str:
    """Met / not met for each target, from the sections that ran; each comparison on its own line."""
    thr = results.get("throughput", [])
    measured = [r for r in thr if "missing" not in r]
    missing = {r["model"]: r["missing"] for r in thr if "missing" in r}

    def ref_row(names: tuple[str, ...], like: dict[str, Any]) -> dict[str, Any] | None:
        for n in names:
            for r in measured:
                if r["model"] == n and all(r[k] == like[k] for k in ("device", "precision", "batch", "seconds")):
                    return r
        return None

    def why_no_ref(names: tuple[str, ...]) -> str:
        gone = [f"{n} {missing[n].split(' (')[0]}" for n in names if n in missing]
        return "; ".join(gone) or f"{' / '.join(names)} not in --references"

    out: list[str] = []
    for title, levels_ok, refs, target in (
        (f"single-codebook 24 kHz codec encode + decode >= {SINGLE_VS_DAC}x DAC", lambda n: n == 1,
         ("dac_24khz_1q", "dac_24khz"), SINGLE_VS_DAC),
        (f"RVQ 24 kHz codec encode + decode >= {RVQ_VS_DAC}x DAC (6 kbps)", lambda n: n > 1, ("dac_24khz",), RVQ_VS_DAC),
    ):
        lines, oks = [], []
        ours = [r for r in measured if not r.get("reference") and r["sample_rate"] == 24000 and levels_ok(r["levels"])]
        for r in ours:
            ref = ref_row(refs, r)
            if ref is None:
                continue
            ratio = round_trip_rtf(r) / round_trip_rtf(ref)
            oks.append(ratio >= target)
            lines.append(f"  - {r['model']} ({r['params_m']:.1f} M, {r['kbps']:.2f} kbps) vs {ref['model']} "
                         f"({ref['params_m']:.1f} M, {ref['kbps']:.2f} kbps), {r['device']} {r['precision']} batch "
                         f"{r['batch']}: enc+dec RTF {round_trip_rtf(r):.2f} vs {round_trip_rtf(ref):.2f} = "
                         f"{ratio:.2f}x (enc {r['encode']['rtf'] / ref['encode']['rtf']:.2f}x, dec "
                         f"{r['decode']['rtf'] / ref['decode']['rtf']:.2f}x): {_verdict(ratio >= target)}")
        why = [] if ours else ["no such preset in --models"]
        why += [] if any(r["model"] in refs for r in measured) else [why_no_ref(refs)]
        out.append(_summary(title, oks, "; ".join(why)))
        out += lines
    info = []
    for r in measured:
        ref = None if r.get("reference") or r["sample_rate"] != 24000 else ref_row(("encodec_24khz",), r)
        if ref is not None:
            info.append(f"  - {r['model']} vs encodec_24khz ({ref['params_m']:.1f} M, {ref['kbps']:.2f} kbps), "
                        f"{r['device']} {r['precision']} batch {r['batch']}: "
                        f"{round_trip_rtf(r) / round_trip_rtf(ref):.2f}x")
    if info:
        out.append("- for reference (no target): encode + decode speed vs EnCodec 24 kHz at 6 kbps")
        out += info

    lines, oks = [], []
    for r in results.get("vs_reference", []):
        if "missing" in r:
            continue
        oks.append(r["speedup"] >= RVQ_VS_DAC_SIDE_BY_SIDE)
        lines.append(f"  - {r['model']} vs {r['reference']} batch {r['batch']}, {r['pairs']} interleaved pairs: "
                     f"{r['ms']:.0f} vs {r['ref_ms']:.0f} ms = {r['speedup']:.2f}x: {_verdict(oks[-1])}")
    out.append(_summary(f"RVQ 24 kHz codec encode + decode >= {RVQ_VS_DAC_SIDE_BY_SIDE}x DAC, side by side",
                        oks, "--sections vs_dac"))
    out += lines

    lines, oks = [], []
    for r in results.get("streaming", []):
        if r["chunk_frames"] == STREAM_CHUNK:
            oks.append(r["overhead"] <= STREAM_OVERHEAD)
            path = "compiled vs compiled offline" if r.get("compiled") else "eager vs eager offline"
            lines.append(f"  - {r['model']} ({path}): streamed RTF {r['rtf_wall']:.2f} (whole pass; median push "
                         f"{r['rtf']:.2f}) vs offline {r['offline_rtf']:.2f}: overhead {100 * r['overhead']:+.1f} % "
                         f"(median of {r['pairs']} interleaved rounds): {_verdict(oks[-1])}")
    out.append(_summary(f"streaming overhead <= {100 * STREAM_OVERHEAD:.0f} % over offline ({STREAM_CHUNK}-frame chunks)",
                        oks, "--sections streaming"))
    out += lines

    lines, oks = [], []
    if "long" in results:
        res = results["long"]
        for f in flatness(res):
            oks.append(f["flat"])
            e, d = f["encode"], f["decode"]
            lines.append(f"  - {f['model']} windowed batch {f['batch_size']}: peak {res['short_seconds']:.0f} s -> "
                         f"{res['long_seconds']:.0f} s file: encode {e['short_mb']:.0f} -> {e['long_mb']:.0f} MB "
                         f"(allowed {e['allowed_mb']:.0f}), decode {d['short_mb']:.0f} -> {d['long_mb']:.0f} MB (allowed "
                         f"{d['allowed_mb']:.0f}); windows {f['short_windows']} -> {f['long_windows']}: "
                         f"{_verdict(f['flat'])}")
    out.append(_summary(f"peak RSS flat on long files (long peak <= {FLAT_SLACK:g} x short peak x batch fill + "
                        f"2 x extra file MB + {FLAT_NOISE_MB:.0f} MB)", oks, "--sections long"))
    out += lines
    return "\n".join(out)


# --- output --------------------------------------------------------------------------------


def set_threads(spec: str) -> str:
    """Set torch's intra-op threads from ``spec`` (an int or "auto"); returns how it was chosen.
    "auto": torch's default, reduced to the cores the 1-min load average leaves free (at least 1)."""
    default = torch.get_num_threads()
    if spec != "auto":
        torch.set_num_threads(int(spec))
        return "--threads"
    load, cores = load_average(), os.cpu_count() or default
    if load is None:
        return "torch default"
    free = max(1, min(default, cores - int(round(load))))
    if free < default:
        torch.set_num_threads(free)
        return f"auto: {cores - free} of {cores} cores busy with other jobs, torch default {default}; --threads N to force"
    return "auto: torch default"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny presets only, shorter files, fewer clips (~1 min)")
    p.add_argument("--models", default=None, help="comma-separated presets for the throughput table (default: all)")
    p.add_argument("--sections", default="throughput,vs_dac,streaming,long,quality",
                   help="comma-separated subset of throughput,vs_dac,streaming,long,quality")
    p.add_argument("--pair-repeats", type=int, default=5, help="interleaved pairs per vs_dac row")
    p.add_argument("--pair-batches", default="1,8", help="batch sizes of the vs_dac rows, comma-separated")
    p.add_argument("--references", default=None,
                   help=f"comma-separated reference codecs for the throughput table, of {','.join(REFERENCES)}; "
                        "'none' for none (default: all; --quick: none)")
    p.add_argument("--baselines", default=None,
                   help=f"folder the reference codecs import from (default {BASELINES_DIR} when it exists; "
                        "see the docstring for the pip install --target command)")
    p.add_argument("--device", default="auto", help="throughput devices: cpu, cuda, or auto (CPU, plus CUDA when present)")
    p.add_argument("--threads", default="auto",
                   help="CPU intra-op threads, or 'auto': torch's default, fewer when the 1-min load average says "
                        "other jobs hold cores (oversubscribed threads make small ops 10x slower)")
    p.add_argument("--min-time", type=float, default=None, help="seconds of timed calls per tiny-model measurement")
    p.add_argument("--big-min-time", type=float, default=5.0,
                   help="presets over 10M parameters: a second timed call only when the first took less")
    p.add_argument("--stream-seconds", type=float, default=None)
    p.add_argument("--stream-repeats", type=int, default=7, help="interleaved offline / streamed pairs per row")
    p.add_argument("--stream-compile", action="store_true",
                   help="also time the compiled stream (stream_encoder(compile=True)) against the offline path "
                        "compiled the same way, at 16-frame chunks, in the same rounds (compiles: ~1 min per model)")
    p.add_argument("--stream-big", default=None,
                   help="presets streamed at a real size (built with causal=True; 16-frame chunks), comma-separated; "
                        f"'none' for none (default {','.join(STREAMING_BIG)}; --quick: none)")
    p.add_argument("--stream-big-repeats", type=int, default=3, help="interleaved rounds per --stream-big row")
    p.add_argument("--long-minutes", type=float, default=None, help="long file (default 10; --quick 1)")
    p.add_argument("--short-minutes", type=float, default=None, help="short file (default 1; --quick 0.25)")
    p.add_argument("--seam-seconds", type=float, default=None, help="seam report file (default 30; --quick 20)")
    p.add_argument("--long-batches", default=None,
                   help="windows per batch in encode_long / decode_long, comma-separated (default 1,8; --quick 1,2)")
    p.add_argument("--checkpoint", default=None, help="trained audio codec dir (mmtok.load_tokenizer) for quality")
    p.add_argument("--arch", default="rvq_codec_tiny", help="architecture of the untrained row without --checkpoint")
    p.add_argument("--num-clips", type=int, default=None, help="quality clips (default 32; --quick 8)")
    p.add_argument("--clip-seconds", type=float, default=0.5)
    p.add_argument("--mmap-threshold-kb", type=int, default=0,
                   help="glibc only: fix malloc's mmap threshold (e.g. 128) so RSS tracks live memory, not the "
                        "heap glibc keeps; 0 = the allocator's default behaviour")
    p.add_argument("--json", default=None, help="write the raw numbers here")
    args = p.parse_args(argv)

    q = args.quick
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    bad = sections - {"throughput", "vs_dac", "streaming", "long", "quality"}
    if bad:
        p.error(f"unknown section(s) {sorted(bad)}")
    names = [m.strip() for m in args.models.split(",")] if args.models else (TINY if q else PRESETS)
    unknown = [n for n in names if n not in mmtok.list_tokenizers()]
    if unknown:
        p.error(f"unknown preset(s) {unknown}; see mmtok.list_tokenizers(modality='audio')")
    ref_spec = args.references if args.references is not None else ("none" if q else ",".join(REFERENCES))
    references = tuple(r.strip() for r in ref_spec.split(",") if r.strip() and ref_spec.strip() != "none")
    bad_refs = [r for r in references if r not in REFERENCES]
    if bad_refs:
        p.error(f"unknown reference codec(s) {bad_refs}; one of {REFERENCES}")
    if args.baselines is not None:
        baselines = args.baselines
    else:
        root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), BASELINES_DIR)
        baselines = next((d for d in (BASELINES_DIR, root) if os.path.isdir(d)), None)
    if args.device == "auto":
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    else:
        if args.device == "cuda" and not torch.cuda.is_available():
            p.error("--device cuda requested but CUDA is not available")
        devices = [torch.device(args.device)]
    threads_note = set_threads(args.threads)
    mmap_kb = args.mmap_threshold_kb if args.mmap_threshold_kb and set_mmap_threshold(1024 * args.mmap_threshold_kb) else 0
    min_time = args.min_time if args.min_time is not None else (0.3 if q else 1.0)
    stream_s = args.stream_seconds or (1.0 if q else 2.0)
    long_s = 60 * (args.long_minutes or (1.0 if q else 10.0))
    short_s = 60 * (args.short_minutes or (0.25 if q else 1.0))
    seam_s = args.seam_seconds or (20.0 if q else 30.0)
    long_batches = tuple(int(b) for b in (args.long_batches or ("1,2" if q else "1,8")).split(","))
    num_clips = args.num_clips or (8 if q else 32)

    load = load_average()
    meta = {"load_avg_1min": load, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "threads_choice": threads_note, "mmap_threshold_kb": mmap_kb, "references": list(references),
            "baselines": baselines,
            "torch": torch.__version__, "python": platform.python_version(), "quick": q,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    print(f"# bench_audio: load avg (1 min) {load if load is None else f'{load:.2f}'} on {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads ({threads_note})"
          + (f", GPU {meta['cuda']}" if meta["cuda"] else "") + (f", malloc mmap threshold {mmap_kb} KB" if mmap_kb else "")
          + (", --quick" if q else ""), flush=True)
    results: dict[str, Any] = {"meta": meta}
    t_start = time.perf_counter()

    if "throughput" in sections:
        _log("throughput")
        rows = section_throughput(names, devices, (1, 8), 1.0, min_time, args.big_min_time, references, baselines)
        results["throughput"] = rows
        print("\n## Encode / decode speed (RTF = audio s per compute s; 1 s clips; batch 8 = 8 s of audio per call; "
              "peak = memory added by the call; enc+dec RTF = audio s per s of encode + decode; (reference) = "
              "DAC / EnCodec with random weights, see the docstring)\n")
        print(render_throughput(rows), flush=True)
    if "vs_dac" in sections:
        _log("vs_dac")
        pair_batches = tuple(int(b) for b in args.pair_batches.split(","))
        rows = section_vs_reference(pair_batches, 1.0, args.pair_repeats, baselines)
        results["vs_reference"] = rows
        print("\n## Side by side (CPU fp32, 1 s clips; encode + decode; interleaved pairs, medians; speedup = "
              "median of per-pair reference / ours)\n")
        print(render_vs_reference(rows), flush=True)
    if "streaming" in sections:
        _log("streaming")
        big_spec = args.stream_big if args.stream_big is not None else ("none" if q else ",".join(STREAMING_BIG))
        big = [b.strip() for b in big_spec.split(",") if b.strip() and big_spec.strip() != "none"]
        if args.stream_compile:
            from torch._dynamo import config as dynamo_config  # one graph per model, mode and direction

            dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 4 * (len(big) + len(STREAMING)))
        rows = section_streaming(STREAMING, stream_s, args.stream_repeats, args.stream_compile, big,
                                 args.stream_big_repeats)
        results["streaming"] = rows
        print(f"\n## Streaming (CPU, batch 1, {stream_s:.0f} s clip; offline = tok.decode(tok.encode(x)); overhead = "
              "median over interleaved rounds of streamed pass / offline, minus 1; compiled rows: "
              "stream_encoder(compile=True) / stream_decoder(compile=True) vs the offline path with the same "
              "compiled stacks; vs eager offline = that stream against the eager offline pass of the same rounds; "
              "warm-up = first offline + streamed pass, compiles included)\n")
        print(render_streaming(rows), flush=True)
    if "long" in sections:
        _log("long files")
        res = section_long(LONG, short_s, long_s, seam_s, long_batches)
        results["long"] = res
        print(f"\n## Long files (CPU; encode_long / decode_long: 10 s windows, batch = windows at a time; peak = RSS added; "
              f"whole-file x{long_s / short_s:.0f} = the whole-file peak scaled to {long_s:.0f} s)\n")
        print(render_long(res))
        print(f"\n## Seams (seam_report, default overlaps, {seam_s:.0f} s file; "
              "decode error of decode_long vs whole-file decode of the same codes)\n")
        print(render_seams(res["seams"]), flush=True)
    if "quality" in sections:
        _log("quality")
        rows = section_quality(args.checkpoint, args.arch, num_clips, args.clip_seconds)
        results["quality"] = rows
        src = args.checkpoint or f"{args.arch} (no --checkpoint: untrained only)"
        print(f"\n## Quality vs n_q and trivial codecs at the same bitrate ({src}; {num_clips} synthetic "
              f"{args.clip_seconds} s clips, seed 1; PESQ / STOI: mean over the items they score)\n")
        print(render_quality(rows), flush=True)

    print("\n## Targets\n")
    print(render_targets(results), flush=True)

    meta["wall_seconds"] = time.perf_counter() - t_start
    meta["load_avg_1min_end"] = load_average()
    end = meta["load_avg_1min_end"]
    print(f"\n# total {meta['wall_seconds']:.0f} s; load avg (1 min) at the end {end if end is None else f'{end:.2f}'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
