"""Causal 3D conv building blocks of the video tokenizers; every layer maps ``(B, C, T, H, W)``.

Time is causal, space is not:

- ``CausalConv3d`` pads time on the past only, by *replicating the first frame*
  ``(k_t - 1) * dilation`` times (a still image padded with itself looks like a static clip,
  so T = 1 images and videos share weights), and pads H, W with zeros ('same'). Output frame
  ``t`` depends on input frames ``<= t`` only. ``causal=False`` splits the temporal padding
  over both ends (replicating the first / last frame) and looks ahead.
- Norms never mix frames. ``norm="group"`` (default): ``FrameGroupNorm`` folds T into the
  batch, so each frame is normalised with its own statistics (a GroupNorm over (T, H, W)
  would mix future frames into the past); its parameters are a 2D ``nn.GroupNorm``'s, so 2D
  weights inflate. ``norm="layer"``: ``ChannelLayerNorm`` normalises each pixel over its
  channels, which is also local in space: spatial tiles then match the whole frame away
  from tile edges (per-frame statistics of a tile differ from the whole frame's).
- ``Downsample3d``: spatial stride-(1, 2, 2) conv (k = (1, 3, 3), padded right / bottom, as
  ``Downsample2d``), then optionally a temporal stride-(2, 1, 1) causal conv (k_t = 3) that
  maps ``1 + 2m`` frames to ``1 + m``: output ``j`` sees frames ``2j - 2 .. 2j``, so output 0
  is frame 0 alone.
- ``Upsample3d`` mirrors it: temporally each frame is repeated twice and the first copy of
  frame 0 dropped (``1 + m -> 1 + 2m``: latent 0 gives frame 0 only, latent ``j`` frames
  ``2j - 1, 2j``), then a causal conv (k_t = 3); spatially nearest x2 then a (1, 3, 3) conv.

Speed (same math, CPU): every conv goes straight to oneDNN (``conv3d``; the dispatcher would
send small batch-1 maps to the slow im2col path); maps narrower than ``CHANNELS_LAST_MAX``
run channels-last 3D (NDHWC), so folding time into the batch for per-frame norms is a view,
not a copy, and k_t = 1 convs run as 2D convs on the folded frames; the causal time padding
is written once into one buffer. ``conv="2+1d"``
(``FactorizedConv3d``) is a *different* model: a (1, 3, 3) spatial conv then a (3, 1, 1)
causal temporal conv in place of each residual 3x3x3 conv (12 / 27 of the FLOPs). On the CPU
path with autograd off, every causal stride-1 (k_t, 1, 1) conv runs as per-frame GEMMs in
place (``time_conv_gemm_``: y[t] = b + sum_k W_k x[t - k], frame 0 standing in for the past;
no padded copy, no new map, the ResBlock's residual summed in the same pass), and the
(2+1)D encoder / decoder run maps of every width channels-last (``FACTORIZED_CHANNELS_LAST_MAX``:
their convs are then 2D convs on the folded frames and GEMMs). ``TIME_GEMM = False`` and
``FACTORIZED_CHANNELS_LAST_MAX = CHANNELS_LAST_MAX`` give the previous path (same math).

Streaming: inside ``with mmtok.layers.audio.streaming(module, state):`` every causal layer
keeps its left context in ``state`` between calls (a conv: the inputs its next output still
needs; ``Upsample3d``: that frame 0 was seen), so feeding a clip window by window (first
window ``1 + k * f_t`` frames, later ones ``k * f_t``) gives exactly the whole-clip output.
"""

from __future__ import annotations

import math
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmtok.layers.audio import StreamingModule
from mmtok.layers.conv import AttnBlock2d, group_norm

Size3 = int | tuple[int, int, int]


def _triple(v: Size3, name: str) -> tuple[int, int, int]:
    t = (v, v, v) if isinstance(v, int) else tuple(int(a) for a in v)
    if len(t) != 3 or min(t) < 1:
        raise ValueError(f"{name} must be a positive int or a (t, h, w) triple, got {v!r}")
    return t  # type: ignore[return-value]


def fold_time(x: Tensor) -> Tensor:
    """(B, C, T, H, W) -> (B * T, C, H, W): frames as a batch of images."""
    b, c, t, h, w = x.shape
    y = x.transpose(1, 2).reshape(b * t, c, h, w)
    if b * t == 1 and y.stride()[1:] == (1, w * c, c):
        # one channels-last frame: give it the batch stride kernels read as channels-last, so it
        # takes the same kernels (and rounding) as a frame of a longer clip
        y = y.as_strided(y.shape, (c * h * w, 1, w * c, c))
    return y


def unfold_time(x: Tensor, t: int) -> Tensor:
    """(B * T, C, H, W) -> (B, C, T, H, W); inverse of ``fold_time``."""
    bt, c, h, w = x.shape
    return x.reshape(bt // t, t, c, h, w).transpose(1, 2)


CHANNELS_LAST_DEVICES = ("cpu",)  # devices where convs go straight to oneDNN, narrow maps channels-last 3D
CHANNELS_LAST_MAX = 128  # maps with fewer channels run NDHWC (faster there); wider ones NCDHW (oneDNN's blocked
                         # NCDHW kernels beat NDHWC from 128 channels on on CPU)


FACTORIZED_CHANNELS_LAST_MAX = 1 << 30  # conv="2+1d" stacks run maps of every width NDHWC: their convs are 2D convs on
                                        # the folded frames and temporal GEMMs, both faster NDHWC (and per-frame norms
                                        # fold time as a view instead of two copies)
_channels_last_max: ContextVar[int | None] = ContextVar("mmtok_conv3d_channels_last_max", default=None)


def _fast_path(x: Tensor) -> bool:
    """float32 on a channels-last device with oneDNN, outside autocast (which casts ``F.conv3d`` only)."""
    return (x.device.type in CHANNELS_LAST_DEVICES and x.dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and not torch.is_autocast_enabled(x.device.type))


def _channels_last(x: Tensor) -> bool:
    cl_max = _channels_last_max.get()
    return _fast_path(x) and x.shape[1] < (CHANNELS_LAST_MAX if cl_max is None else cl_max)


class _StackLayout:
    """Within: maps narrower than ``FACTORIZED_CHANNELS_LAST_MAX`` (``conv="2+1d"``) or
    ``CHANNELS_LAST_MAX`` (``"3d"``) run channels-last; set by the encoder / decoder forward."""

    def __init__(self, conv: str) -> None:
        self.cl_max = FACTORIZED_CHANNELS_LAST_MAX if conv == "2+1d" else None
        self.token = None

    def __enter__(self) -> None:
        self.token = _channels_last_max.set(self.cl_max)

    def __exit__(self, *exc: object) -> None:
        _channels_last_max.reset(self.token)


def conv3d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, int, int] = (1, 1, 1),
           padding: tuple[int, int, int] = (0, 0, 0), dilation: tuple[int, int, int] = (1, 1, 1)) -> Tensor:
    """``F.conv3d`` (no groups), faster on CPU with the same math: straight to oneDNN (with its
    own backward), so every shape gets the same kernel with or without gradients; inputs of
    fewer than ``CHANNELS_LAST_MAX`` channels channels-last 3D, and there a k_t = 1 conv
    (``padding[0] == 0``, ``stride[0] == 1``) as a 2D conv over the frames folded into the
    batch. Elsewhere ``F.conv3d``."""
    if not _fast_path(x) or weight.dtype != torch.float32:
        return F.conv3d(x, weight, bias, stride, padding, dilation)
    if not _channels_last(x):
        return torch.ops.aten.mkldnn_convolution(x.contiguous(), weight, bias, list(padding), list(stride),
                                                 list(dilation), 1)
    x = x.contiguous(memory_format=torch.channels_last_3d)
    if weight.shape[2] == 1 and stride[0] == 1 and padding[0] == 0:
        y = torch.ops.aten.mkldnn_convolution(fold_time(x), weight[:, :, 0], bias, list(padding[1:]), list(stride[1:]),
                                              list(dilation[1:]), 1)
        return unfold_time(y, x.shape[2])
    return torch.ops.aten.mkldnn_convolution(x, weight, bias, list(padding), list(stride), list(dilation), 1)


TIME_GEMM = True  # causal (k_t, 1, 1) convs on the CPU fast path as per-frame GEMMs (False: oneDNN conv3d, as before)
TIME_GEMM_ROWS = 2048  # positions per GEMM: one chunk of a frame (rows x channels) stays in cache over its k_t taps


def _owned_map(x: Tensor, overwrite: bool) -> Tensor:
    """``x`` itself when it may be overwritten and is contiguous in the CPU path's layout, else a copy that is."""
    fmt = torch.channels_last_3d if _channels_last(x) else torch.contiguous_format
    return x if overwrite and x.is_contiguous(memory_format=fmt) else _empty_like_layout(x, x.shape).copy_(x)


def _same_layout(a: Tensor, x: Tensor) -> bool:
    """``a`` is contiguous in the CPU layout of ``x`` (the memory format ``time_conv_gemm_`` reads)."""
    fmt = torch.channels_last_3d if _channels_last(x) else torch.contiguous_format
    return a.dtype == x.dtype and a.device == x.device and a.is_contiguous(memory_format=fmt)


def time_conv_gemm_(x: Tensor, weight: Tensor, bias: Tensor | None, dilation: int = 1, first: int = 0,
                    add: Tensor | None = None) -> Tensor:
    """Causal temporal conv (weight (C, C, k_t, 1, 1), stride 1) *in place* on ``x`` (B, C, F, H, W),
    as per-frame GEMMs on its memory: frame ``s`` (``s`` from ``F - 1`` down to ``first``) becomes
    ``bias + sum_k W_k x[max(s - (k_t - 1 - k) * dilation, 0)]`` (taps from the current frame
    back; frames before 0 are frame 0, the causal replicate padding). Returns ``x[:, :, first:]``.

    ``first = 0``: ``x`` is the unpadded input (offline); ``first = pad_past``: its first frames
    are the padding / the stream's past. Each output row gets the same GEMM calls in the same
    order either way and whatever the clip length (chunks of ``TIME_GEMM_ROWS`` positions of
    one frame), so a 1-frame clip, a long clip and a stream give bit-identical frames. Channels
    last (NDHWC) maps are (H W, C) row blocks per frame, NCDHW ones (C, H W) column blocks;
    going down in time, every frame a tap still reads is an input frame. No padded copy, no
    im2col, no new map. ``add`` (the output's shape and layout, e.g. a residual): each output
    chunk is written as ``chunk + add`` (the same float sum as ``add + conv(x)`` afterwards), so
    the residual sum takes no extra pass over the maps."""
    b, c, f, h, w = x.shape
    kt, hw = weight.shape[2], h * w
    cl = _channels_last(x)
    if not x.is_contiguous(memory_format=torch.channels_last_3d if cl else torch.contiguous_format):
        raise ValueError("time_conv_gemm_ needs a map contiguous in its layout (see _owned_map)")
    rows = min(TIME_GEMM_ROWS, hw)
    if add is not None and (add.shape != (b, c, f - first, h, w) or not _same_layout(add, x)):
        raise ValueError("time_conv_gemm_: add must be contiguous in the map's layout, of the output's shape")
    if cl:  # frame (i, s): rows x.view(B, F, HW, C)[i, s]; y = x_k @ W_k^T
        v = x.permute(0, 2, 3, 4, 1).view(b, f, hw, c)
        av = None if add is None else add.permute(0, 2, 3, 4, 1).view(b, f - first, hw, c)
        taps = [weight[:, :, k, 0, 0].t().contiguous() for k in range(kt)]
        tmp, bias_v = x.new_empty(rows, c), bias
    else:  # frame (i, s): columns x.view(B, C, F, HW)[i, :, s]; y = W_k @ x_k
        v = x.view(b, c, f, hw).transpose(1, 2)  # (B, F, C, HW), a view
        av = None if add is None else add.view(b, c, f - first, hw).transpose(1, 2)
        taps = [weight[:, :, k, 0, 0].contiguous() for k in range(kt)]
        tmp, bias_v = x.new_empty(c, rows), (None if bias is None else bias[:, None])
    for i in range(b):
        for r in range(0, hw, rows):
            n = min(rows, hw - r)
            fr = v[i, :, r : r + n] if cl else v[i, :, :, r : r + n]  # (F, n, C) / (F, C, n)
            out = tmp[:n] if cl else (tmp if n == rows else x.new_empty(c, n))  # contiguous
            ar = None if av is None else (av[i, :, r : r + n] if cl else av[i, :, :, r : r + n])
            for s in range(f - 1, first - 1, -1):
                a, m = (fr[s], taps[kt - 1]) if cl else (taps[kt - 1], fr[s])
                if bias_v is None:
                    torch.mm(a, m, out=out)
                else:
                    torch.addmm(bias_v, a, m, out=out)
                for k in range(kt - 2, -1, -1):
                    src = fr[max(s - (kt - 1 - k) * dilation, 0)]
                    if cl:
                        out.addmm_(src, taps[k])
                    else:
                        out.addmm_(taps[k], src)
                if ar is None:
                    fr[s].copy_(out)
                else:
                    torch.add(out, ar[s - first], out=fr[s])
    return x[:, :, first:]


def conv3d_module(conv: nn.Conv3d, x: Tensor) -> Tensor:
    """``conv(x)`` for a plain ``nn.Conv3d`` (zero padding, no groups) through ``conv3d``."""
    return conv3d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation)  # type: ignore[arg-type]


def _empty_like_layout(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    fmt = torch.channels_last_3d if _channels_last(x) else torch.contiguous_format
    return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt)


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm of each frame on its own: (B, C, T, H, W) -> same; causal by construction.
    Also accepts (B, C, H, W) images. Parameters (and ``state_dict``) are a 2D GroupNorm's."""

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 4:
            return super().forward(x)
        return unfold_time(super().forward(fold_time(x)), x.shape[2])


def group_norm3d(channels: int, max_groups: int = 32, min_group_channels: int = 1) -> FrameGroupNorm:
    """Per-frame GroupNorm with the largest group count <= ``max_groups`` dividing ``channels``
    that leaves >= ``min_group_channels`` channels per group (the same groups as
    ``mmtok.layers.conv.group_norm``). One channel per group is a per-frame InstanceNorm: it
    removes every frame's colour and level from each map (``min_group_channels=4`` keeps them)."""
    return FrameGroupNorm(group_norm(channels, max_groups, min_group_channels).num_groups, channels, eps=1e-6)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of each position: (B, C, *) -> same; local in time and space."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


NORMS = ("group", "layer")


def norm3d(kind: str, channels: int, min_group_channels: int = 1) -> nn.Module:
    """``"group"``: ``group_norm3d`` (per frame); ``"layer"``: ``ChannelLayerNorm`` (per position)."""
    if kind == "group":
        return group_norm3d(channels, min_group_channels=min_group_channels)
    if kind == "layer":
        return ChannelLayerNorm(channels, eps=1e-6)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


class CausalConv3d(StreamingModule):
    """Conv3d with causal temporal padding (replicate frame 0) and 'same' zero spatial padding.

    (B, C_in, T, H, W) -> (B, C_out, 1 + (T - 1) // stride_t, H, W). Odd spatial kernels only;
    the temporal stride is the only stride (spatial downsampling is ``Downsample3d``'s).
    ``weight`` has the shape of ``nn.Conv3d``'s ``(C_out, C_in, k_t, k_h, k_w)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Size3 = 3,
        stride_t: int = 1,
        dilation_t: int = 1,
        bias: bool = True,
        causal: bool = True,
    ) -> None:
        super().__init__()
        kt, kh, kw = _triple(kernel_size, "kernel_size")
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"spatial kernel sizes must be odd ('same' padding), got {(kh, kw)}")
        if stride_t < 1 or dilation_t < 1:
            raise ValueError(f"stride_t and dilation_t must be >= 1, got {stride_t}, {dilation_t}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = (kt, kh, kw)
        self.stride_t, self.dilation_t, self.causal = stride_t, dilation_t, causal
        span = (kt - 1) * dilation_t
        self.pad_past = span if causal else span - span // 2
        self.pad_future = span - self.pad_past
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kt, kh, kw))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv3d``'s default initialisation."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride_t={self.stride_t}, "
                f"dilation_t={self.dilation_t}, causal={self.causal}")

    def _conv(self, x: Tensor) -> Tensor:
        _, kh, kw = self.kernel_size
        return conv3d(x, self.weight, self.bias, stride=(self.stride_t, 1, 1), padding=(0, kh // 2, kw // 2),
                      dilation=(self.dilation_t, 1, 1))

    def _pad_time(self, x: Tensor) -> Tensor:
        """``x`` with frame 0 replicated ``pad_past`` times before it (and the last frame
        ``pad_future`` times after it), written once into one buffer."""
        p, f = self.pad_past, self.pad_future
        if not (p or f):
            return x
        b, c, t, h, w = x.shape
        out = _empty_like_layout(x, (b, c, p + t + f, h, w))
        out[:, :, p : p + t] = x
        if p:
            out[:, :, :p] = x[:, :, :1]
        if f:
            out[:, :, p + t :] = x[:, :, -1:]
        return out

    def forward(self, x: Tensor, overwrite_input: bool = False, add: Tensor | None = None) -> Tensor:
        """The conv of ``x`` (plus ``add``, a map of the output's shape, when given: ``add + conv(x)``).
        ``overwrite_input``: the caller owns ``x`` and no longer needs it, so a causal (k_t, 1, 1)
        conv on the CPU path may write its output (and the sum) into ``x``'s memory."""
        if self._stream is not None:
            y = self._forward_stream(x)
        elif self._time_gemm(x):
            x = _owned_map(x, overwrite_input)
            if (add is not None and add.shape == x.shape and _same_layout(add, x)
                    and not (torch.is_grad_enabled() and add.requires_grad)):
                return time_conv_gemm_(x, self.weight, self.bias, self.dilation_t, add=add)
            y = time_conv_gemm_(x, self.weight, self.bias, self.dilation_t)
        else:
            y = self._conv(self._pad_time(x))
        return y if add is None else add + y

    def _time_gemm(self, x: Tensor) -> bool:
        """Whether this conv runs as per-frame GEMMs (``time_conv_gemm_``): a causal stride-1
        (k_t, 1, 1) conv on the CPU fast path with autograd off for it."""
        return (self.kernel_size[1:] == (1, 1) and self.stride_t == 1 and self.pad_future == 0 and self.in_channels
                == self.out_channels and TIME_GEMM and _fast_path(x) and self.weight.dtype == torch.float32
                and not (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)))

    def _forward_stream(self, x: Tensor) -> Tensor:
        past = self._stream.get(self)
        if past is None:  # the stream starts as the offline pass does: frame 0 replicated
            past = x[:, :, :1].expand(-1, -1, self.pad_past, -1, -1)
        x = torch.cat([past, x], dim=2)
        span = (self.kernel_size[0] - 1) * self.dilation_t + 1
        n = (x.shape[2] - span) // self.stride_t + 1 if x.shape[2] >= span else 0
        self._stream[self] = x[:, :, n * self.stride_t :].clone()  # a copy: a view would keep the whole window alive
        if n == 0:
            return x.new_zeros(x.shape[0], self.out_channels, 0, *x.shape[3:])
        if self._time_gemm(x):  # x is our own buffer: its first pad_past frames are the past, the output overwrites the rest
            return time_conv_gemm_(_owned_map(x, True), self.weight, self.bias, self.dilation_t, first=self.pad_past)
        return self._conv(x[:, :, : (n - 1) * self.stride_t + span])


def inflate_weight(w2d: Tensor, kt: int) -> Tensor:
    """A 2D conv weight (C_out, C_in, k_h, k_w) -> (C_out, C_in, kt, k_h, k_w) acting on the
    current frame only (the last temporal tap; the others zero): on a T = 1 input (or per
    frame, before any temporal mixing) the 3D conv then equals the 2D one."""
    w = w2d.new_zeros(w2d.shape[0], w2d.shape[1], kt, *w2d.shape[2:])
    w[:, :, -1] = w2d
    return w


def identity_time_conv_(conv: CausalConv3d) -> None:
    """Set a (C, C, k_t, 1, 1) temporal conv to the identity on the current frame (in place)."""
    c, c_in, kt, kh, kw = conv.weight.shape
    if c != c_in or kh != 1 or kw != 1:
        raise ValueError(f"identity needs a (C, C, k_t, 1, 1) conv, got {tuple(conv.weight.shape)}")
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[torch.arange(c), torch.arange(c), kt - 1, 0, 0] = 1.0
        if conv.bias is not None:
            conv.bias.zero_()


class FactorizedConv3d(nn.Module):
    """(2+1)D causal conv: ``spatial`` (k = (1, k_h, k_w), per frame) then ``temporal``
    (k = (k_t, 1, 1), causal), both ``CausalConv3d`` with bias, no nonlinearity in between;
    (B, C_in, T, H, W) -> (B, C_out, T, H, W). ``(k_h k_w + k_t) / (k_t k_h k_w)`` of a full
    conv's FLOPs for C_in = C_out (12 / 27 at 3x3x3). Output frame t sees frames <= t."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size3 = 3, causal: bool = True) -> None:
        super().__init__()
        kt, kh, kw = _triple(kernel_size, "kernel_size")
        self.spatial = CausalConv3d(in_channels, out_channels, (1, kh, kw), causal=causal)
        self.temporal = CausalConv3d(out_channels, out_channels, (kt, 1, 1), causal=causal)

    def forward(self, x: Tensor, add: Tensor | None = None) -> Tensor:
        """The conv of ``x``, plus ``add`` when given (``add + conv(x)``, summed in the temporal conv's pass)."""
        return self.temporal(self.spatial(x), overwrite_input=True, add=add)  # the spatial output is ours to overwrite


CONVS = ("3d", "2+1d")


class ResBlock3d(nn.Module):
    """Norm (per frame / per position) -SiLU-CausalConv3d(3x3x3) twice plus a (1x1x1 projected when needed)
    skip; (B, C_in, T, H, W) -> (B, C_out, T, H, W). Names mirror ``ResBlock2d``. ``conv="2+1d"``:
    each 3x3x3 conv is a ``FactorizedConv3d`` (``conv1.spatial`` / ``conv1.temporal``, ...)."""

    def __init__(self, in_channels: int, out_channels: int | None = None, dropout: float = 0.0,
                 causal: bool = True, kernel_size: Size3 = 3, norm: str = "group",
                 min_group_channels: int = 1, zero_init: bool = False, conv: str = "3d") -> None:
        super().__init__()
        if conv not in CONVS:
            raise ValueError(f"conv must be one of {CONVS}, got {conv!r}")
        out_channels = out_channels or in_channels
        make = CausalConv3d if conv == "3d" else FactorizedConv3d
        self.norm1 = norm3d(norm, in_channels, min_group_channels)
        self.conv1 = make(in_channels, out_channels, kernel_size, causal=causal)
        self.norm2 = norm3d(norm, out_channels, min_group_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = make(out_channels, out_channels, kernel_size, causal=causal)
        self.skip = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        if zero_init:  # the block starts as its skip connection (identity when widths match)
            last = self.conv2 if conv == "3d" else self.conv2.temporal
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.dropout(F.silu(self.norm2(h)))
        skip = conv3d_module(self.skip, x) if isinstance(self.skip, nn.Conv3d) else x
        if isinstance(self.conv2, FactorizedConv3d):  # the residual sum in the temporal conv's output pass
            return self.conv2(h, add=skip)
        return skip + self.conv2(h)


class FrameAttnBlock(AttnBlock2d):
    """``AttnBlock2d`` (single-head self-attention over H x W, residual) on each frame alone:
    (B, C, T, H, W) -> same; causal (no attention across time)."""

    def forward(self, x: Tensor) -> Tensor:
        return unfold_time(super().forward(fold_time(x)), x.shape[2])


class Downsample3d(nn.Module):
    """Spatial /2 (``conv``: stride-(1, 2, 2) conv, k = (1, 3, 3), padded right / bottom) and,
    when ``temporal``, time ``1 + 2m -> 1 + m`` (``time_conv``: causal conv, k_t = 3, stride 2).

    (B, C, T, H, W) -> (B, C, T' , H / 2, W / 2), T' = 1 + (T - 1) // 2 when temporal, else T.
    """

    def __init__(self, channels: int, spatial: bool = True, temporal: bool = False, causal: bool = True) -> None:
        super().__init__()
        if not (spatial or temporal):
            raise ValueError("Downsample3d needs spatial=True or temporal=True")
        self.conv = nn.Conv3d(channels, channels, (1, 3, 3), stride=(1, 2, 2)) if spatial else None
        self.time_conv = CausalConv3d(channels, channels, (3, 1, 1), stride_t=2, causal=causal) if temporal else None

    def forward(self, x: Tensor) -> Tensor:
        if self.conv is not None:
            x = conv3d_module(self.conv, F.pad(x, (0, 1, 0, 1)))
        if self.time_conv is not None:
            x = self.time_conv(x)
        return x


class Upsample3d(StreamingModule):
    """Mirror of ``Downsample3d``: when ``temporal``, time ``1 + m -> 1 + 2m`` (every frame
    twice, the first copy of frame 0 dropped, then ``time_conv``: causal conv, k_t = 3); when
    ``spatial``, nearest x2 then ``conv`` (k = (1, 3, 3)).

    (B, C, T, H, W) -> (B, C, T', 2H, 2W), T' = 2T - 1 when temporal, else T. Input frame 0
    alone makes output frame 0.
    """

    def __init__(self, channels: int, spatial: bool = True, temporal: bool = False, causal: bool = True) -> None:
        super().__init__()
        if not (spatial or temporal):
            raise ValueError("Upsample3d needs spatial=True or temporal=True")
        self.causal = causal
        self.time_conv = CausalConv3d(channels, channels, (3, 1, 1), causal=causal) if temporal else None
        self.conv = nn.Conv3d(channels, channels, (1, 3, 3), padding=(0, 1, 1)) if spatial else None

    def forward(self, x: Tensor) -> Tensor:
        if self.time_conv is not None:
            first = True
            if self._stream is not None:  # only the stream's first chunk holds frame 0
                first = self not in self._stream
                self._stream[self] = x.new_ones(())
            if _channels_last(x):  # every frame twice, written straight into a channels-last buffer
                b, c, t, h, w = x.shape
                y = _empty_like_layout(x, (b, c, 2 * t, h, w))
                y[:, :, 0::2] = x
                y[:, :, 1::2] = x
            else:
                y = x.repeat_interleave(2, dim=2)
            x = self.time_conv(y[:, :, 1:] if first else y, overwrite_input=True)  # y is ours
        if self.conv is not None:
            if _channels_last(x):  # per frame: nearest x2 of the frames folded into the batch (a view in NDHWC)
                x = x.contiguous(memory_format=torch.channels_last_3d)
                x = unfold_time(F.interpolate(fold_time(x), scale_factor=2.0, mode="nearest"), x.shape[2])
            else:
                x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
            x = conv3d_module(self.conv, x)
        return x


def _temporal_levels(num_levels: int, temporal_downsamples: int) -> list[bool]:
    """Which of the ``num_levels - 1`` resolution changes also change time: the last ones."""
    n = num_levels - 1
    if not 0 <= temporal_downsamples <= n:
        raise ValueError(f"{temporal_downsamples} temporal downsamplings need at least as many spatial ones, got {n}")
    return [i >= n - temporal_downsamples for i in range(n)]


def _mid_block(ch: int, attention: bool, dropout: float, causal: bool, norm: str,
               min_group_channels: int = 1, zero_init: bool = False, conv: str = "3d") -> nn.Sequential:
    """ResBlock, per-frame attention (or identity), ResBlock: the middle of the encoder and decoder
    (the same parameter names as the 2D ``mid`` so 2D weights inflate into it)."""
    res = dict(norm=norm, min_group_channels=min_group_channels, zero_init=zero_init, conv=conv)
    return nn.Sequential(
        ResBlock3d(ch, ch, dropout, causal, **res),
        FrameAttnBlock(ch, min_group_channels=min_group_channels) if attention else nn.Identity(),
        ResBlock3d(ch, ch, dropout, causal, **res),
    )


class CausalEncoder3d(nn.Module):
    """Video -> latent map: (B, in_channels, 1 + f_t * n, H, W) -> (B, z_channels, 1 + n, H / f_s, W / f_s),
    f_s = 2 ** (len(channel_mult) - 1), f_t = 2 ** temporal_downsamples (applied at the last levels).

    The layout (and parameter names) mirror ``ConvEncoder2d``, so a 2D encoder's weights inflate
    into it (see ``mmtok.video.inflate``).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        base_channels: int,
        channel_mult: tuple[int, ...],
        num_res_blocks: int,
        z_channels: int,
        temporal_downsamples: int,
        mid_attention: bool = True,
        dropout: float = 0.0,
        causal: bool = True,
        norm: str = "group",
        min_group_channels: int = 1,
        zero_init_residual: bool = False,
        conv: str = "3d",
    ) -> None:
        super().__init__()
        temporal = _temporal_levels(len(channel_mult), temporal_downsamples)
        res = dict(norm=norm, min_group_channels=min_group_channels, zero_init=zero_init_residual, conv=conv)
        self.conv_in = CausalConv3d(in_channels, base_channels, 3, causal=causal)
        blocks: list[nn.Module] = []
        ch = base_channels
        for i, mult in enumerate(channel_mult):
            out = base_channels * mult
            for _ in range(num_res_blocks):
                blocks.append(ResBlock3d(ch, out, dropout, causal, **res))
                ch = out
            if i < len(channel_mult) - 1:
                blocks.append(Downsample3d(ch, spatial=True, temporal=temporal[i], causal=causal))
        self.down = nn.Sequential(*blocks)
        self.mid = _mid_block(ch, mid_attention, dropout, causal, **res)
        self.norm_out = norm3d(norm, ch, min_group_channels)
        self.conv_out = CausalConv3d(ch, z_channels, 3, causal=causal)
        self.conv_kind = conv  # "3d" / "2+1d": picks the maps' layout (see _StackLayout)

    def forward(self, x: Tensor) -> Tensor:
        with _StackLayout(getattr(self, "conv_kind", "3d")):
            h = self.mid(self.down(self.conv_in(x)))
            return self.conv_out(F.silu(self.norm_out(h))).contiguous()


class CausalDecoder3d(nn.Module):
    """Latent map -> video: (B, z_channels, 1 + n, h, w) -> (B, out_channels, 1 + f_t * n, h * f_s, w * f_s);
    mirrors ``CausalEncoder3d`` (temporal upsampling at the first levels) and ``ConvDecoder2d``'s names."""

    def __init__(
        self,
        *,
        out_channels: int,
        base_channels: int,
        channel_mult: tuple[int, ...],
        num_res_blocks: int,
        z_channels: int,
        temporal_downsamples: int,
        mid_attention: bool = True,
        dropout: float = 0.0,
        causal: bool = True,
        norm: str = "group",
        min_group_channels: int = 1,
        zero_init_residual: bool = False,
        conv: str = "3d",
    ) -> None:
        super().__init__()
        temporal = _temporal_levels(len(channel_mult), temporal_downsamples)
        res = dict(norm=norm, min_group_channels=min_group_channels, zero_init=zero_init_residual, conv=conv)
        ch = base_channels * channel_mult[-1]
        self.conv_in = CausalConv3d(z_channels, ch, 3, causal=causal)
        self.mid = _mid_block(ch, mid_attention, dropout, causal, **res)
        blocks: list[nn.Module] = []
        for i, mult in reversed(list(enumerate(channel_mult))):
            out = base_channels * mult
            for _ in range(num_res_blocks + 1):
                blocks.append(ResBlock3d(ch, out, dropout, causal, **res))
                ch = out
            if i > 0:  # undoes the encoder's i-1 -> i resolution change
                blocks.append(Upsample3d(ch, spatial=True, temporal=temporal[i - 1], causal=causal))
        self.up = nn.Sequential(*blocks)
        self.norm_out = norm3d(norm, ch, min_group_channels)
        self.conv_out = CausalConv3d(ch, out_channels, 3, causal=causal)
        self.conv_kind = conv  # "3d" / "2+1d": picks the maps' layout (see _StackLayout)

    def forward(self, z: Tensor) -> Tensor:
        with _StackLayout(getattr(self, "conv_kind", "3d")):
            h = self.up(self.mid(self.conv_in(z)))
            return self.conv_out(F.silu(self.norm_out(h))).contiguous()


__all__ = [
    "CausalConv3d",
    "FactorizedConv3d",
    "CONVS",
    "conv3d",
    "FrameGroupNorm",
    "group_norm3d",
    "ChannelLayerNorm",
    "norm3d",
    "ResBlock3d",
    "FrameAttnBlock",
    "Downsample3d",
    "Upsample3d",
    "CausalEncoder3d",
    "CausalDecoder3d",
    "fold_time",
    "unfold_time",
    "inflate_weight",
    "identity_time_conv_",
]
