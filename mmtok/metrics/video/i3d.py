"""Inception-I3D (Carreira & Zisserman 2017) features for FVD: the 400 Kinetics logits.

Architecture: Inflated Inception-v1 with 3D convolutions (``Conv3d_1a_7x7`` ... ``Mixed_5c``),
TensorFlow "SAME" padding computed from the input size, BatchNorm eps 1e-3 (the value the
original TF/Sonnet model was trained with), a (2, 7, 7) average pool with stride 1 and a 1x1x1
logits convolution. Features are the 400-d logits before softmax, averaged over the remaining
time steps: the feature layer of the TF FVD reference (Unterthiner et al. 2018), VideoGPT's and
StyleGAN-V's protocols.

State-dict layout: parameter names match the PyTorch I3D port of ``piergiaj/pytorch-i3d``
(``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1b.bn.running_var``, ``logits.conv3d.bias``, ...),
which is the layout of both files people use:

- ``i3d_pretrained_400.pt`` of VideoGPT (the default looked up by "auto"),
- ``rgb_imagenet.pt`` of pytorch-i3d (ImageNet-inflated, Kinetics-400 trained).

Neither name carries a hash, so a file is never "verified": its sha256 goes into the protocol.

Input: uint8 (B, 3, T, H, W) in [0, 255] or float in [-1, 1]; frames are resized (short side to
224, bilinear, ``align_corners=False``, no antialias, then a centre crop) and scaled to [-1, 1],
the range the I3D was trained on (VideoGPT's script feeds [-0.5, 0.5]; we do not). The temporal
pooling needs T >= 9 frames.

Weights are never downloaded: they load from an explicit path or the torch hub cache
(``$TORCH_HOME/hub/checkpoints``) through :func:`mmtok.weights.load_state_dict_file` (plain
tensors only, never unpickled code); when absent, the error names the file and where to put it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmtok.io import file_sha256
from mmtok.weights import WeightsError, hub_cache_path, load_state_dict_file, resolve_weights_file, verify_known_file

I3D_WEIGHTS_NAME = "i3d_pretrained_400.pt"
I3D_WEIGHTS_URL = "https://drive.google.com/uc?id=1mQK8KD8G6UWRa5t87SRMm5PVXtlpneJT"  # VideoGPT's download id
I3D_ALT_WEIGHTS_NAME = "rgb_imagenet.pt"
I3D_ALT_WEIGHTS_URL = "https://github.com/piergiaj/pytorch-i3d/raw/master/models/rgb_imagenet.pt"
NUM_CLASSES = 400
FEATURE_DIM = NUM_CLASSES
FEATURE_LAYER = "logits (400-d, before softmax, averaged over time)"
INPUT_SIZE = 224
MIN_FRAMES = 9  # time after the stride-8 trunk must be >= 2 for the (2, 7, 7) average pool
BN_EPS = 1e-3
RESIZE_DESCRIPTION = ("short side to 224 then centre crop 224x224, bilinear (align_corners=False), no antialias, "
                      "per frame on float pixels")
INPUT_DESCRIPTION = "RGB scaled to [-1, 1] (uint8 / 127.5 - 1)"
CHUNK_CLIPS = 8  # clips per forward pass (bounds activation memory)
UNVERIFIED = "unverified (the file name carries no hash; sha256 recorded)"

# (out channels of branches 0, 1a, 1b, 2a, 2b, 3b) of each Inception module, in order
_MIXED: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("MaxPool3d_4a_3x3", ((3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("MaxPool3d_5a_2x2", ((2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)


def _same_pad(x: Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> Tensor:
    """Zero-pad (B, C, T, H, W) like TensorFlow "SAME" (output size ceil(size / stride), extra pad at the end).

    Zeros equal TF's max-pool padding here: every padded max pool follows a ReLU (inputs >= 0).
    """
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        total = max(k - (s if size % s == 0 else size % s), 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


class Unit3D(nn.Module):
    """Conv3d ("SAME" padding, no bias) -> BatchNorm3d -> ReLU; (B, C_in, T, H, W) -> (B, C_out, T', H', W')."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1), norm: bool = True, relu: bool = True, bias: bool = False,
                 eps: float = BN_EPS) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=eps) if norm else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPool3dSame(nn.Module):
    """Max pool with TF "SAME" padding; (B, C, T, H, W) -> (B, C, ceil(T/s_t), ceil(H/s_h), ceil(W/s_w))."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four branches (1x1; 1x1 -> 3x3x3; 1x1 -> 3x3x3; max pool 3x3x3 -> 1x1), concatenated on channels."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], eps: float = BN_EPS) -> None:
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3 = widths
        self.b0 = Unit3D(in_channels, c0, eps=eps)
        self.b1a = Unit3D(in_channels, c1a, eps=eps)
        self.b1b = Unit3D(c1a, c1b, (3, 3, 3), eps=eps)
        self.b2a = Unit3D(in_channels, c2a, eps=eps)
        self.b2b = Unit3D(c2a, c2b, (3, 3, 3), eps=eps)
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, c3, eps=eps)
        self.out_channels = c0 + c1b + c2b + c3

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3D(nn.Module):
    """Inception-I3D, RGB stream: (B, 3, T, 224, 224) in [-1, 1] -> (B, 400) logits (mean over time).

    Submodule names are the end points of the original model, so the state dict loads files of the
    pytorch-i3d layout. Needs T >= 9 (``MIN_FRAMES``); other spatial sizes work (the final average
    pool covers the whole remaining map: (2, 7, 7) at 224).
    """

    def __init__(self, num_classes: int = NUM_CLASSES, in_channels: int = 3, eps: float = BN_EPS) -> None:
        super().__init__()
        self.order: list[str] = []

        def add(name: str, module: nn.Module) -> None:
            self.add_module(name, module)
            self.order.append(name)

        add("Conv3d_1a_7x7", Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2), eps=eps))
        add("MaxPool3d_2a_3x3", MaxPool3dSame((1, 3, 3), (1, 2, 2)))
        add("Conv3d_2b_1x1", Unit3D(64, 64, eps=eps))
        add("Conv3d_2c_3x3", Unit3D(64, 192, (3, 3, 3), eps=eps))
        add("MaxPool3d_3a_3x3", MaxPool3dSame((1, 3, 3), (1, 2, 2)))
        ch = 192
        for name, spec in _MIXED:
            if name.startswith("MaxPool"):
                add(name, MaxPool3dSame(*spec))  # type: ignore[arg-type]
            else:
                block = InceptionModule(ch, spec, eps=eps)  # type: ignore[arg-type]
                add(name, block)
                ch = block.out_channels
        self.logits = Unit3D(ch, num_classes, norm=False, relu=False, bias=True)
        self.feature_channels = ch  # 1024

    def trunk(self, x: Tensor) -> Tensor:
        """(B, 3, T, H, W) -> (B, 1024, ceil(T/8), ceil(H/32), ceil(W/32)) after ``Mixed_5c``."""
        for name in self.order:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        h = self.trunk(x)
        if h.shape[2] < 2:
            raise ValueError(f"I3D needs clips of at least {MIN_FRAMES} frames, got {x.shape[2]}")
        h = F.avg_pool3d(h, (2, h.shape[3], h.shape[4]), stride=1)  # (B, 1024, t - 1, 1, 1); (2, 7, 7) at 224
        return self.logits(h).mean(dim=(2, 3, 4))  # (B, 400)


def default_i3d_weights_path() -> Path:
    """Where the weights are looked up by default: ``<torch hub dir>/checkpoints/i3d_pretrained_400.pt``."""
    return hub_cache_path(I3D_WEIGHTS_NAME)


def _where_to_get() -> str:
    return (f"{I3D_WEIGHTS_NAME} (VideoGPT's I3D port, {I3D_WEIGHTS_URL}) or {I3D_ALT_WEIGHTS_NAME} "
            f"(pytorch-i3d, {I3D_ALT_WEIGHTS_URL}); both are plain state dicts of the pytorch-i3d layout")


def resolve_i3d_weights(weights: str | os.PathLike | None = "auto") -> Path:
    """Path of the I3D weights file; raise ``FileNotFoundError`` naming the file and where to put it.

    ``weights`` is a path, or None / "auto" for ``<torch hub dir>/checkpoints/i3d_pretrained_400.pt``.
    """
    return resolve_weights_file(weights, I3D_WEIGHTS_NAME, "I3D weights for rFVD", _where_to_get(),
                                "--i3d-weights PATH", "skip rFVD (--no-fvd / fvd=False)")


def save_random_i3d_weights(path: str | os.PathLike, seed: int = 0) -> Path:
    """Write a random-init I3D state dict (pytorch-i3d layout) to ``path`` (for tests, no download).

    Convolutions get He-normal init and BatchNorm identity statistics, so activations keep
    their scale through the 58 conv layers; the logits layer is scaled by 1 / sqrt(fan_in).
    """
    gen = torch.Generator().manual_seed(seed)
    net = InceptionI3D()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv3d):
                fan_in = m.in_channels * math.prod(m.kernel_size)
                gain = 2.0 if m.out_channels != NUM_CLASSES else 1.0
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (gain / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.zero_()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path


def prepare_clips(x: Tensor, size: int = INPUT_SIZE) -> Tensor:
    """uint8 [0, 255] or float [-1, 1] (B, 3, T, H, W) -> float32 (B, 3, T, size, size) in [-1, 1].

    Short side resized to ``size`` (bilinear, no antialias; long side rounded up), then a centre crop.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"I3D takes a tensor, got {type(x).__name__}")
    if x.ndim != 5 or x.shape[1] != 3:
        raise ValueError(f"I3D takes RGB clips of shape (B, 3, T, H, W), got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        v = x.float().div(127.5).sub(1.0)
    elif torch.is_floating_point(x):
        v = x.float()
        lo, hi = (float(t) for t in torch.aminmax(v)) if v.numel() else (0.0, 0.0)
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo < -1 - 1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"float clips for I3D must lie in [-1, 1], got values in [{lo:.3g}, {hi:.3g}]")
    else:
        raise TypeError(f"I3D takes uint8 clips in [0, 255] or float clips in [-1, 1], got {x.dtype}")
    b, c, t, h, w = v.shape
    if (h, w) == (size, size):
        return v
    scale = size / min(h, w)
    nh, nw = (size, math.ceil(w * scale)) if h <= w else (math.ceil(h * scale), size)
    frames = v.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    frames = F.interpolate(frames, size=(nh, nw), mode="bilinear", align_corners=False, antialias=False)
    top, left = (nh - size) // 2, (nw - size) // 2
    frames = frames[:, :, top : top + size, left : left + size]
    return frames.reshape(b, t, c, size, size).permute(0, 2, 1, 3, 4).contiguous()


class I3DFeatures(nn.Module):
    """FVD features of clips: I3D logits (400-d, before softmax).

    Args:
        weights: path of ``i3d_pretrained_400.pt`` / ``rgb_imagenet.pt`` (or any state dict of the
            pytorch-i3d layout), or None / "auto" for the torch hub cache.
        device: where to run the network.
        input_size: frame size the clips are resized to (224 for FVD; smaller sizes only for tests,
            their numbers are not FVD).

    ``forward(x)`` takes uint8 (B, 3, T, H, W) in [0, 255] or float in [-1, 1], T >= 9, and
    returns float32 (B, 400).
    """

    def __init__(self, weights: str | os.PathLike | None = "auto", device: str | torch.device = "cpu",
                 input_size: int = INPUT_SIZE) -> None:
        super().__init__()
        self.weights_path = resolve_i3d_weights(weights)
        self.weights_verified = verify_known_file(self.weights_path, I3D_WEIGHTS_NAME, I3D_WEIGHTS_URL)
        self.weights_sha256 = file_sha256(self.weights_path)
        self.input_size = int(input_size)
        state = load_state_dict_file(self.weights_path, "I3D weights")
        self.net = InceptionI3D()
        missing, unexpected = self._load(state)
        if missing or unexpected:
            raise WeightsError(
                f"{self.weights_path} is not an I3D state dict of the pytorch-i3d layout (missing {missing[:4]}, "
                f"unexpected {unexpected[:4]}); expected {_where_to_get()}"
            )
        self.net.requires_grad_(False)
        self.net.to(device).eval()

    def _load(self, state: dict[str, Tensor]) -> tuple[list[str], list[str]]:
        """Load ``state``; (missing, unexpected) keys, ignoring BatchNorm step counters absent in old files."""
        try:
            result = self.net.load_state_dict(state, strict=False)
        except RuntimeError as e:  # shape mismatches
            raise WeightsError(f"{self.weights_path} does not fit the I3D network ({str(e)[:300]}); "
                               f"expected {_where_to_get()}") from e
        missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        return missing, list(result.unexpected_keys)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def describe(self) -> dict[str, object]:
        """Feature-extractor part of the protocol fingerprint."""
        return {
            "name": "Inception-I3D RGB (Kinetics-400; pytorch-i3d layout)",
            "feature_layer": FEATURE_LAYER,
            "feature_dim": FEATURE_DIM,
            "weights_file": self.weights_path.name,
            "weights_sha256": self.weights_sha256,
            "weights_verified": self.weights_verified,
            "verification": "verified" if self.weights_verified else UNVERIFIED,
            "input_size": self.input_size,
            "resize": RESIZE_DESCRIPTION.replace("224", str(self.input_size)),
            "input": INPUT_DESCRIPTION,
            "batch_norm_eps": BN_EPS,
            "min_frames": MIN_FRAMES,
        }

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        """uint8 / [-1, 1] float (B, 3, T, H, W) -> float32 (B, 400)."""
        if isinstance(x, Tensor) and x.ndim == 5 and x.shape[2] < MIN_FRAMES:
            raise ValueError(f"I3D (rFVD) needs clips of at least {MIN_FRAMES} frames, got {x.shape[2]}; "
                             "use longer clips or skip rFVD (fvd=False / --no-fvd)")
        out = []
        for chunk in torch.split(x, CHUNK_CLIPS):
            out.append(self.net(prepare_clips(chunk.to(self.device), self.input_size)).float())
        return torch.cat(out) if out else torch.zeros(0, FEATURE_DIM, device=self.device)


_SHARED: dict[tuple[str, str, str, int], I3DFeatures] = {}


def get_i3d(weights: str | os.PathLike | None = "auto", device: str | torch.device = "cpu",
            input_size: int = INPUT_SIZE) -> I3DFeatures:
    """A process-wide shared :class:`I3DFeatures` per (weights file, content hash, device, input size)."""
    path = resolve_i3d_weights(weights)
    key = (str(path.resolve()), file_sha256(path), str(torch.device(device)), int(input_size))
    if key not in _SHARED:
        _SHARED.clear()  # keep at most one network alive
        _SHARED[key] = I3DFeatures(path, device=device, input_size=input_size)
    return _SHARED[key]
