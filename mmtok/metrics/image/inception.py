"""Inception-v3 FID features, identical to torch-fidelity / pytorch-fid.

The network is torch-fidelity's ``FeatureExtractorInceptionV3`` (the TensorFlow 2015-12-05
graph ported to PyTorch) with its TF1.x-compatible bilinear resize to 299x299 applied to
uint8 input, so features (and hence FID) match torch-fidelity and pytorch-fid. We never
use torchmetrics' resize path, whose ``antialias=True`` default changes the numbers.

Weights are never downloaded: they load from an explicit path or from the standard torch
hub cache (``$TORCH_HOME/hub/checkpoints``); when absent the error names the file and the
folder to put it in. The file is read by :func:`mmtok.weights.load_state_dict_file` (plain
tensors only, never unpickled code; torch-fidelity's own loader would unpickle it), and a file
named ``weights-inception-2015-12-05-6726825d.pth`` must match the sha256 prefix in its name.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from mmtok.io import file_sha256
from mmtok.weights import WeightsError, hub_cache_path, load_state_dict_file, resolve_weights_file, verify_known_file

INCEPTION_WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_WEIGHTS_NAME
)
FEATURE_DIM = 2048
INPUT_SIZE = 299
RESIZE_DESCRIPTION = "bilinear to 299x299, TF1.x-compatible (torch-fidelity), on uint8 input, no antialias"


def default_weights_path() -> Path:
    """Where the weights are looked up by default: ``<torch hub dir>/checkpoints/<file>``."""
    return hub_cache_path(INCEPTION_WEIGHTS_NAME)


def resolve_weights(weights: str | os.PathLike | None = None) -> Path:
    """Path of the Inception weights file; raise ``FileNotFoundError`` naming where to put it.

    ``weights`` is a path, or None / "auto" for the torch hub cache.
    """
    return resolve_weights_file(weights, INCEPTION_WEIGHTS_NAME, "Inception-v3 FID weights", INCEPTION_WEIGHTS_URL,
                                "--inception-weights PATH")


def _build_network() -> nn.Module:
    """torch-fidelity's Inception-v3 architecture with untrained weights (no file, no network)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Untrained(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):  # type: ignore[override]
            if state_dict == {}:  # construction without weights: keep the fresh init
                return None
            return super().load_state_dict(state_dict, strict=strict, assign=assign)

    import tempfile

    with tempfile.TemporaryDirectory() as d:
        empty = Path(d) / "empty.pth"
        torch.save({}, empty)
        return _Untrained("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))


def save_random_inception_weights(path: str | os.PathLike, seed: int = 0) -> Path:
    """Write a random-init state dict of the FID Inception network to ``path`` (for tests).

    Convolutions get He-normal init and BatchNorm keeps identity statistics, so features
    stay well scaled through the 94 layers (default init would let them vanish).
    """
    gen = torch.Generator().manual_seed(seed)
    net = _build_network()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * m.in_features**-0.5)
                m.bias.zero_()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path


class InceptionFeatures(nn.Module):
    """Pool3 (2048-d) Inception-v3 features of images, as used by FID.

    Args:
        weights: path of ``weights-inception-2015-12-05-6726825d.pth`` (or any state-dict
            file of the same network), or None / "auto" for the torch hub cache.
        device: where to run the network.

    ``forward(x)`` takes uint8 (B, 3, H, W) in [0, 255] (any H, W; resized to 299 inside)
    and returns float32 (B, 2048).
    """

    def __init__(self, weights: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> None:
        super().__init__()
        self.weights_path = resolve_weights(weights)
        self.weights_verified = verify_known_file(self.weights_path, INCEPTION_WEIGHTS_NAME, INCEPTION_WEIGHTS_URL)
        self.weights_sha256 = file_sha256(self.weights_path)
        state = load_state_dict_file(self.weights_path, "Inception-v3 FID weights")
        self.net = _build_network()
        try:
            self.net.load_state_dict(state)
        except RuntimeError as e:
            raise WeightsError(
                f"{self.weights_path} is not a valid Inception-v3 FID state dict ({str(e)[:300]}); "
                f"expected {INCEPTION_WEIGHTS_NAME} from {INCEPTION_WEIGHTS_URL}"
            ) from e
        self.net.requires_grad_(False)
        self.net.to(device).eval()

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def describe(self) -> dict[str, object]:
        """Feature-extractor part of the protocol fingerprint."""
        return {
            "name": "inception-v3-compat (torch-fidelity FeatureExtractorInceptionV3, pool3)",
            "feature_dim": FEATURE_DIM,
            "weights_file": self.weights_path.name,
            "weights_sha256": self.weights_sha256,
            "weights_verified": self.weights_verified,
            "resize": RESIZE_DESCRIPTION,
            "input": "uint8 RGB",
        }

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        """uint8 (B, 3, H, W) -> float32 (B, 2048)."""
        if not isinstance(x, Tensor) or x.dtype != torch.uint8:
            raise TypeError(
                f"Inception features take uint8 images in [0, 255], got {getattr(x, 'dtype', type(x))}; "
                "use mmtok.data.to_uint8() on [-1, 1] tensors"
            )
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
        (feats,) = self.net(x.to(self.device))
        return feats.float()


_SHARED: dict[tuple[str, str, str], InceptionFeatures] = {}


def get_inception(weights: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> InceptionFeatures:
    """A process-wide shared :class:`InceptionFeatures` per (weights file, content hash, device)."""
    path = resolve_weights(weights)
    key = (str(path.resolve()), file_sha256(path), str(torch.device(device)))
    if key not in _SHARED:
        _SHARED.clear()  # keep at most one network (~100 MB) alive
        _SHARED[key] = InceptionFeatures(path, device=device)
    return _SHARED[key]
