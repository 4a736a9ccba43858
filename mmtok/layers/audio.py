"""1D building blocks of the audio codecs: Snake, weight-normed causal / centred convolutions,
SEANet residual units, encoder and decoder, a ConvNeXt1d block and an inverse-STFT head.

Every layer works on ``(B, C, T)`` maps. Padding is explicit: a *centred* layer pads both
sides (DAC-like, looks ahead), a *causal* one pads the past only, so output ``t`` never
depends on input after ``t``. Lengths are exact: a conv with stride ``s`` maps ``n * s``
samples to ``n`` frames, a transposed conv maps ``n`` frames to ``n * s`` samples.

Causal layers stream: inside ``with streaming(module, state):`` each of them keeps, in the
dict ``state``, what it needs of the past (the last ``(k - 1) * d + 1 - s`` inputs of a conv,
the last ``ceil(k / s) - 1`` input frames of a transposed conv, the overlap tail of the
iSTFT head), so calling the module chunk by chunk gives the offline output. ``reach(m)``
tells how far a module (or a whole stack) looks into the past and the future.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm


# --- receptive field -------------------------------------------------------------------
@dataclass(frozen=True)
class Reach:
    """How far a module looks around an output position, in units of its *input*.

    left / right: input units before the start / after the end of the span an output
    position covers (``right == 0`` for a causal module). rate: input units per output
    unit (a stride-4 conv: 4; a x4 transposed conv: 1/4).
    """

    left: Fraction = Fraction(0)
    right: Fraction = Fraction(0)
    rate: Fraction = Fraction(1)

    def then(self, other: "Reach") -> "Reach":
        """This module followed by ``other``: ``other``'s reach converted to our input units."""
        return Reach(self.left + other.left * self.rate, self.right + other.right * self.rate, self.rate * other.rate)


def reach(module: nn.Module) -> Reach:
    """The ``Reach`` of a module: its own ``reach()`` when it defines one, the chained reach
    of an ``nn.Sequential``, else none (pointwise: Snake, norms, linear layers)."""
    own = getattr(module, "reach", None)
    if callable(own) and not isinstance(module, nn.Sequential):
        return own()
    if isinstance(module, nn.Sequential):
        return chain_reach(list(module))
    return Reach()


def chain_reach(modules: Sequence[nn.Module]) -> Reach:
    """Reach of ``modules`` applied one after the other."""
    out = Reach()
    for m in modules:
        out = out.then(reach(m))
    return out


# --- streaming ---------------------------------------------------------------------------
class StreamingModule(nn.Module):
    """A layer with carried state while streaming. ``_stream`` is the state dict of the
    running stream (None offline); the layer stores its own entry under ``self``."""

    causal: bool = True

    def __init__(self) -> None:
        super().__init__()
        self._stream: dict[nn.Module, Tensor] | None = None


def streaming_layers(module: nn.Module) -> list[StreamingModule]:
    """The layers of ``module`` that carry state while streaming (pass them to ``streaming``
    to skip walking the module tree on every chunk)."""
    return [m for m in module.modules() if isinstance(m, StreamingModule)]


@contextmanager
def streaming(module: nn.Module, state: dict[nn.Module, Tensor],
              layers: Sequence[StreamingModule] | None = None) -> Iterator[None]:
    """Run ``module`` chunk by chunk within, carrying each layer's past in ``state``
    (a dict owned by the caller: one per stream, empty at the start of the stream).
    ``layers``: ``streaming_layers(module)``, when the caller keeps it between chunks.

    Raises ``ValueError`` if a layer is not causal (a centred conv needs future input).
    """
    if layers is None:
        layers = streaming_layers(module)
    bad = [type(m).__name__ for m in layers if not m.causal]
    if bad:
        raise ValueError(
            f"cannot stream a non-causal stack ({len(bad)} centred layers, e.g. {bad[0]}); build it with causal=True"
        )
    # a plain attribute (no parameter, buffer or module): set it directly, skipping
    # nn.Module.__setattr__'s registry checks, which cost more than a small layer's chunk
    for m in layers:
        m.__dict__["_stream"] = state
    try:
        yield
    finally:
        for m in layers:
            m.__dict__["_stream"] = None


def _norm(module: nn.Module, weight_norm: bool) -> nn.Module:
    return _weight_norm(module) if weight_norm else module


def inference_weight(conv: nn.Module) -> Tensor:
    """``conv.weight`` for a forward pass. With autograd off, a weight-normed weight is
    computed once and kept on ``conv`` until its parameters change (their version counters,
    storage, dtype or device), instead of on every call as the parametrization does; without
    weight norm, or with autograd on, the weight itself.

    Recomputing ``g * v / |v|`` touches every weight on every call: measured 4-14% of a
    batch-1 encode + decode of the 74M-parameter ``rvq_codec_24k`` on CPU. The kept copy costs
    one more weight-sized tensor per weight-normed conv while it lives.
    """
    param = getattr(conv, "parametrizations", None)
    if torch.is_grad_enabled() or param is None or not hasattr(param, "weight"):
        return conv.weight  # with autograd each call builds its own graph through the weight
    if torch.compiler.is_compiling():
        # traced by torch.compile: the version check would break the graph; use the kept
        # weight when an eager call made one (the caller refreshes it: ``refresh_weights``),
        # else compute it in the graph
        hit = conv.__dict__.get("_inference_weight")
        return conv.weight if hit is None else hit[1]
    sources = (param.weight.original0, param.weight.original1)
    try:
        key = tuple((t._version, t.data_ptr(), t.dtype, t.device) for t in sources)
    except RuntimeError:  # inference tensors (parameters made under inference_mode) have no version
        return conv.weight
    hit = conv.__dict__.get("_inference_weight")
    if hit is not None and hit[0] == key:
        return hit[1]
    w = conv.weight
    conv.__dict__["_inference_weight"] = (key, w)  # a plain attribute: not in the state dict
    return w


def refresh_weights(convs: Sequence[nn.Module]) -> None:
    """Bring every conv's kept inference weight up to date with its parameters (eagerly), so
    a ``torch.compile``-d forward, which reads the kept weights without checking them, sees
    the current parameters. ``convs``: e.g. ``[m.conv for m in module.modules() if hasattr(m, "conv")]``."""
    if torch.is_grad_enabled():
        return
    for c in convs:
        inference_weight(c)


# im2col + one GEMM for small float32 maps on CPU. For a batch-1 conv1d, PyTorch 2.11 picks
# aten's slow_conv_dilated2d for a dilated kernel on a map of <= 20480 elements and oneDNN
# above that size or at batch > 1; measured at 1 thread on this project's chunk shapes (16
# to 512 channels, 20 to 2600 steps), the first is 2.5-4x and the second 1.4-2.5x slower than
# gathering the k taps into one (C * k, T) matrix and multiplying once (oneDNN's set-up per
# call, ~75-120 us, dominates a small map). Above ~2^17 elements oneDNN wins again.
_IM2COL_MAX = 1 << 17


def conv1d_inference(x: Tensor, conv: nn.Module) -> Tensor:
    """``conv(x)`` for a padded ``x`` (B, C_in, L) with autograd off: the kept inference
    weight (``inference_weight``), through im2col + GEMM where that beats PyTorch's own CPU
    kernels (small float32 maps, see ``_IM2COL_MAX``), else ``F.conv1d``."""
    w, b = inference_weight(conv), conv.bias
    (s,), (d,) = conv.stride, conv.dilation
    k = w.shape[-1]
    bsz, cin, n = x.shape
    if (
        x.device.type == "cpu" and x.dtype == torch.float32 and w.dtype == torch.float32 and conv.groups == 1
        and k > 1 and conv.padding == (0,) and x.numel() <= _IM2COL_MAX
        and (d > 1 or bsz > 1 or x.numel() > 20480)  # where PyTorch would not run its own im2col
    ):
        span = (k - 1) * d + 1
        if n < span:
            raise ValueError(f"input of {n} steps is shorter than the kernel span {span}")
        cols = x.unfold(-1, span, s)[..., ::d]  # (B, C, T, k): views, no copy yet
        t = cols.shape[2]
        cols = cols.permute(0, 1, 3, 2).reshape(bsz, cin * k, t)  # the one copy
        w2 = w.reshape(w.shape[0], cin * k)
        if bsz == 1:
            y = torch.mm(w2, cols[0]) if b is None else torch.addmm(b[:, None], w2, cols[0])
            return y.unsqueeze(0)
        y = torch.matmul(w2, cols)
        return y if b is None else y.add_(b[:, None])
    return F.conv1d(x, w, b, conv.stride, conv.padding, conv.dilation, conv.groups)


# A transposed conv whose weight outgrows the CPU caches (here >= 2^23 elements, 32 MB in
# float32) as one GEMM and an overlap-add. PyTorch 2.11's CPU path (oneDNN) lays the
# ``(C_in, C_out, k)`` weight out afresh on every call, one more pass over it: measured at 1
# thread, 1536 -> 768 channels, k = 16, stride 8 (the first decoder layer of ``rvq_codec_24k``)
# takes 59 ms on 17 frames against 26 ms here, and both take ~95 ms on 151 frames; layers
# with weights of <= 3M elements are 0-15% faster in PyTorch's own kernel.
_GEMM_TRANSPOSE_MIN = 1 << 23


def conv_transpose1d_inference(x: Tensor, conv: nn.Module) -> Tensor:
    """``conv(x)`` for an ``nn.ConvTranspose1d`` with autograd off (the kept inference weight):
    (B, C_in, T) -> (B, C_out, (T - 1) * stride + k), through a GEMM and an overlap-add for a
    large float32 weight on CPU (see ``_GEMM_TRANSPOSE_MIN``), else ``F.conv_transpose1d``."""
    w, b = inference_weight(conv), conv.bias
    (s,), k = conv.stride, w.shape[-1]
    if (
        x.device.type == "cpu" and x.dtype == torch.float32 and w.dtype == torch.float32 and w.numel() >= _GEMM_TRANSPOSE_MIN
        and conv.groups == 1 and conv.dilation == (1,) and conv.padding == (0,) and conv.output_padding == (0,)
    ):
        bsz, cin, t = x.shape
        cout = w.shape[1]
        m = -(-k // s)  # input frames that overlap one output block of ``s`` samples
        cols = torch.matmul(w.reshape(cin, cout * k).t(), x).view(bsz, cout, k, t)
        y = x.new_zeros(bsz, cout, t + m - 1, s)
        for i in range(m):  # taps [i s, (i + 1) s) of frame j land in output block j + i
            block = cols[:, :, i * s : (i + 1) * s]  # the last block may be shorter than s
            y[:, :, i : i + t, : block.shape[2]] += block.transpose(-1, -2)
        y = y.view(bsz, cout, (t + m - 1) * s)[..., : (t - 1) * s + k]
        return y if b is None else y.add_(b[:, None])
    return F.conv_transpose1d(x, w, b, conv.stride, conv.padding, conv.output_padding, conv.groups, conv.dilation)


def weight_of(conv: nn.Module) -> Tensor:
    """The trainable weight tensor of a conv / linear layer: with weight norm, the
    parametrization's direction tensor (``original1``, the weight's shape), else ``weight``."""
    param = getattr(conv, "parametrizations", None)
    if param is not None and hasattr(param, "weight"):
        return param.weight.original1
    return conv.weight


# --- activations and norms ----------------------------------------------------------------
class Snake(nn.Module):
    """Snake activation ``x + sin(alpha * x) ** 2 / alpha`` with one learned alpha per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, T) -> (B, C, T)
        inv = (self.alpha + 1e-9).reciprocal()
        if torch.is_grad_enabled() and (x.requires_grad or self.alpha.requires_grad):
            return x + inv * torch.sin(self.alpha * x).pow(2)
        # Without autograd: the same operations in one buffer, in place (one allocation
        # instead of four; products and sums commute exactly, so the result is bitwise equal).
        y = torch.mul(self.alpha, x)
        return y.sin_().pow_(2).mul_(inv).add_(x)


class LayerNorm1d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, T) map (each frame on its own: streams freely)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


# --- convolutions -------------------------------------------------------------------------
def reflect_pad(x: Tensor, left: int, right: int) -> Tensor:
    """Mirror-pad the last dim by ``left`` / ``right`` (edge sample not repeated); an input not
    longer than the padding is zero-extended on the right first (and that extension dropped)."""
    if not left and not right:
        return x
    grow = max(0, max(left, right) - x.shape[-1] + 1)
    y = F.pad(F.pad(x, (0, grow)), (left, right), mode="reflect")
    return y[..., : y.shape[-1] - grow]


class AudioConv1d(StreamingModule):
    """Conv1d with exact lengths and explicit padding: ``n * stride`` samples -> ``n`` frames.

    The input is padded by ``(k - 1) * dilation + 1 - stride`` zeros in all: on the left only
    (``causal``), or split with the larger half on the left (centred). A length that is
    not a multiple of ``stride`` is right-padded with zeros to the next multiple (offline).

    ``pad_mode="reflect"`` (EnCodec's SEANet) pads with the mirrored signal instead of zeros
    (inputs shorter than the padding are first zero-extended on the right, as EnCodec does).
    Streamed, the first chunk must then be longer than ``pad_left`` (its mirror is the past).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        causal: bool = False,
        weight_norm: bool = True,
        pad_mode: str = "zeros",
    ) -> None:
        super().__init__()
        span = (kernel_size - 1) * dilation + 1
        if span < stride:
            raise ValueError(f"kernel span {span} must be >= stride {stride}")
        if pad_mode not in ("zeros", "reflect"):
            raise ValueError(f"pad_mode must be 'zeros' or 'reflect', got {pad_mode!r}")
        self.pad_mode = pad_mode
        conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation, groups=groups, bias=bias)
        self.conv = _norm(conv, weight_norm)
        self.stride, self.causal = stride, causal
        total = span - stride
        self.pad_left = total if causal else total - total // 2
        self.pad_right = total - self.pad_left

    @property
    def weight(self) -> Tensor:
        """The trainable weight (weight norm: its direction tensor)."""
        return weight_of(self.conv)

    def reach(self) -> Reach:
        return Reach(Fraction(self.pad_left), Fraction(self.pad_right), Fraction(self.stride))

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, n * stride) -> (B, C_out, n)
        if self._stream is not None:
            return self._forward_stream(x)
        extra = -x.shape[-1] % self.stride
        if self.pad_mode == "reflect":
            x = reflect_pad(x, self.pad_left, self.pad_right + extra)
        else:
            x = F.pad(x, (self.pad_left, self.pad_right + extra))
        if torch.is_grad_enabled():
            return self.conv(x)
        return conv1d_inference(x, self.conv)

    def _forward_stream(self, x: Tensor) -> Tensor:
        if x.shape[-1] % self.stride:
            raise ValueError(
                f"a streamed chunk must be a multiple of the stride {self.stride}, got {x.shape[-1]} samples"
            )
        if self.pad_left:
            past = self._stream.get(self)
            if past is None and self.pad_mode == "reflect":  # the mirror of the stream's start
                if x.shape[-1] <= self.pad_left:
                    raise ValueError(
                        f"a reflect-padded causal conv needs a first streamed chunk longer than {self.pad_left} "
                        f"steps at its rate, got {x.shape[-1]}; push a longer first chunk"
                    )
                past = x[..., 1 : self.pad_left + 1].flip(-1)
            if past is None:  # the stream starts with the zeros the offline padding adds
                past = x.new_zeros(*x.shape[:-1], self.pad_left)
            x = torch.cat([past, x], dim=-1)
            # a view, no copy: it keeps one chunk of this layer's input alive, nothing grows
            self._stream[self] = x[..., x.shape[-1] - self.pad_left :]
        return conv1d_inference(x, self.conv)


class AudioConvTranspose1d(StreamingModule):
    """ConvTranspose1d with exact lengths: ``n`` frames -> ``n * stride`` samples.

    The full output has ``(n - 1) * stride + k`` samples; ``k - stride`` are trimmed: all on
    the right (``causal``: sample ``t`` depends on frames ``<= t // stride`` only), or
    split with the larger half on the right (centred).

    ``padding=p`` (centred only) trims ``p`` samples from both ends instead, as
    ``nn.ConvTranspose1d(padding=p)`` does (DAC: ``p = ceil(stride / 2)``): ``n`` frames ->
    ``n * stride + k - stride - 2 p`` samples (one short of ``n * stride`` for DAC's odd strides).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        bias: bool = True,
        causal: bool = False,
        weight_norm: bool = True,
        padding: int | None = None,
    ) -> None:
        super().__init__()
        if kernel_size < stride:
            raise ValueError(f"kernel_size {kernel_size} must be >= stride {stride}")
        if padding is not None and (causal or not 0 <= 2 * padding <= kernel_size):
            raise ValueError(f"padding={padding} needs a centred layer and 2 * padding <= kernel_size ({kernel_size})")
        self.conv = _norm(nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride, bias=bias), weight_norm)
        self.kernel_size, self.stride, self.causal = kernel_size, stride, causal
        total = kernel_size - stride
        self.trim_left = 0 if causal else total // 2 if padding is None else padding
        self.length_change = 0 if padding is None else total - 2 * padding  # output - n * stride
        self.context = math.ceil(kernel_size / stride) - 1  # past input frames an output frame needs

    @property
    def weight(self) -> Tensor:
        return weight_of(self.conv)

    def reach(self) -> Reach:
        k, s, tl = self.kernel_size, self.stride, self.trim_left
        return Reach(Fraction((k - 1 - tl) // s), Fraction(math.ceil(tl / s)), Fraction(1, s))

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, n) -> (B, C_out, n * stride)
        n = x.shape[-1]
        if self._stream is not None:
            if self.context:
                past = self._stream.get(self)
                if past is None:  # zero frames contribute nothing: the offline start
                    past = x.new_zeros(*x.shape[:-1], self.context)
                x = torch.cat([past, x], dim=-1)
                self._stream[self] = x[..., x.shape[-1] - self.context :]  # a view (see AudioConv1d)
            start = self.context * self.stride
            y = conv_transpose1d_inference(x, self.conv)
            return y[..., start : start + n * self.stride]
        if torch.is_grad_enabled():
            y = self.conv(x)
        else:
            y = conv_transpose1d_inference(x, self.conv)
        return y[..., self.trim_left : self.trim_left + n * self.stride + self.length_change]


# --- SEANet -------------------------------------------------------------------------------
class ResidualUnit1d(nn.Module):
    """Snake -> dilated conv (k=7) -> Snake -> 1x1 conv, plus the input; (B, C, T) -> (B, C, T)."""

    def __init__(self, channels: int, dilation: int, kernel_size: int = 7, causal: bool = False) -> None:
        super().__init__()
        self.block = nn.Sequential(
            Snake(channels),
            AudioConv1d(channels, channels, kernel_size, dilation=dilation, causal=causal),
            Snake(channels),
            AudioConv1d(channels, channels, 1, causal=causal),
        )

    def reach(self) -> Reach:
        return chain_reach(list(self.block))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


class SEANetEncoder(nn.Module):
    """Waveform -> latent frames: conv(k=7), then per stride ``s`` residual units (dilations
    1, 3, 9) + Snake + strided conv (k=2s) doubling the channels, then Snake + conv(k=3).

    (B, in_channels, n * hop_length) -> (B, latent_dim, n), ``hop_length = prod(strides)``.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        base_channels: int,
        strides: Sequence[int],
        latent_dim: int,
        dilations: Sequence[int] = (1, 3, 9),
        kernel_size: int = 7,
        causal: bool = False,
    ) -> None:
        super().__init__()
        ch = base_channels
        layers: list[nn.Module] = [AudioConv1d(in_channels, ch, kernel_size, causal=causal)]
        for s in strides:
            layers += [ResidualUnit1d(ch, d, kernel_size, causal) for d in dilations]
            layers += [Snake(ch), AudioConv1d(ch, 2 * ch, 2 * s, stride=s, causal=causal)]
            ch *= 2
        layers += [Snake(ch), AudioConv1d(ch, latent_dim, 3, causal=causal)]
        self.layers = nn.Sequential(*layers)
        self.hop_length = math.prod(strides)
        self.out_channels = ch

    def reach(self) -> Reach:
        return reach(self.layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class SEANetDecoder(nn.Module):
    """Latent frames -> waveform, mirroring ``SEANetEncoder``: conv(k=7) to ``channels``, then
    per stride (reversed) Snake + transposed conv (k=2s) halving the channels + residual
    units, then Snake + ``conv_out`` (k=7) + tanh.

    (B, latent_dim, n) -> (B, out_channels, n * prod(strides)).

    ``upsample_padding="symmetric"`` trims ``ceil(s / 2)`` from both ends of every transposed
    conv (DAC's layout; an odd stride loses one sample); the output is then right-padded with
    zeros to ``n * prod(strides)``. Default ``"exact"``: every layer maps ``n`` to ``n * s``.
    """

    def __init__(
        self,
        *,
        out_channels: int,
        channels: int,
        strides: Sequence[int],
        latent_dim: int,
        dilations: Sequence[int] = (1, 3, 9),
        kernel_size: int = 7,
        causal: bool = False,
        upsample_padding: str = "exact",
    ) -> None:
        super().__init__()
        if upsample_padding not in ("exact", "symmetric"):
            raise ValueError(f"upsample_padding must be 'exact' or 'symmetric', got {upsample_padding!r}")
        symmetric = upsample_padding == "symmetric"
        if channels % 2 ** len(strides):
            raise ValueError(
                f"decoder channels ({channels}) must be divisible by 2 ** len(strides) = {2 ** len(strides)}"
            )
        ch = channels
        layers: list[nn.Module] = [AudioConv1d(latent_dim, ch, kernel_size, causal=causal)]
        for s in reversed(strides):
            pad = math.ceil(s / 2) if symmetric else None
            layers += [Snake(ch), AudioConvTranspose1d(ch, ch // 2, 2 * s, s, causal=causal, padding=pad)]
            ch //= 2
            layers += [ResidualUnit1d(ch, d, kernel_size, causal) for d in dilations]
        layers += [Snake(ch)]
        self.layers = nn.Sequential(*layers)
        self.conv_out = AudioConv1d(ch, out_channels, kernel_size, causal=causal)
        self.upsample = math.prod(strides)

    def reach(self) -> Reach:
        return chain_reach([*self.layers, self.conv_out])

    def forward(self, z: Tensor) -> Tensor:
        y = torch.tanh(self.conv_out(self.layers(z)))
        short = z.shape[-1] * self.upsample - y.shape[-1]  # > 0 only with upsample_padding="symmetric"
        return F.pad(y, (0, short)) if short > 0 else y


# --- ConvNeXt + iSTFT (Vocos-style decoder parts) ------------------------------------------
class ConvNeXt1d(nn.Module):
    """ConvNeXt block at frame rate: depthwise conv (k=7) -> LayerNorm -> MLP (GELU) ->
    layer scale, plus the input; (B, C, T) -> (B, C, T)."""

    def __init__(
        self, dim: int, mlp_dim: int, kernel_size: int = 7, layer_scale: float = 1e-6, causal: bool = False
    ) -> None:
        super().__init__()
        self.dwconv = AudioConv1d(dim, dim, kernel_size, groups=dim, causal=causal, weight_norm=False)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale)))

    def reach(self) -> Reach:
        return self.dwconv.reach()

    def forward(self, x: Tensor) -> Tensor:
        h = self.dwconv(x).transpose(1, 2)  # (B, T, C)
        h = self.fc2(F.gelu(self.fc1(self.norm(h)))) * self.gamma
        return x + h.transpose(1, 2)


class ISTFTHead(StreamingModule):
    """Frame features -> waveform through an inverse STFT; (B, dim, T) -> (B, channels, T * hop).

    A linear layer predicts, per frame and channel, ``n_fft // 2 + 1`` log-magnitudes
    (``exp``, clipped at ``max_magnitude``) and phases (as ``cos`` / ``sin``).

    - centred (``causal=False``): ``torch.istft(center=True)``; frame ``j``'s window is
      centred on sample ``j * hop`` (sample ``t`` needs frames up to ``t // hop + n_fft / (2 hop)``).
    - causal: frames -> ``irfft`` -> window -> overlap-add written here, frame ``j``'s
      window covering samples ``[j * hop, j * hop + n_fft)``, so sample ``t`` needs frames
      ``<= t // hop`` only; the output is divided by the steady-state window envelope and
      the tail past ``T * hop`` is dropped offline / carried to the next chunk when
      streaming (streamed == offline).
    """

    def __init__(
        self,
        dim: int,
        hop_length: int,
        n_fft: int,
        channels: int = 1,
        causal: bool = False,
        max_magnitude: float = 100.0,
    ) -> None:
        super().__init__()
        if n_fft % hop_length or n_fft < hop_length:
            raise ValueError(f"n_fft ({n_fft}) must be a positive multiple of hop_length ({hop_length})")
        self.hop_length, self.n_fft, self.channels, self.causal = hop_length, n_fft, channels, causal
        self.log_max = math.log(max_magnitude)
        self.proj = nn.Linear(dim, channels * (n_fft + 2))
        window = torch.hann_window(n_fft)
        self.register_buffer("window", window, persistent=False)
        # steady-state sum of squared windows at each position of a hop (constant for Hann)
        self.register_buffer("envelope", window.pow(2).reshape(-1, hop_length).sum(0), persistent=False)

    @property
    def weight(self) -> Tensor:
        return self.proj.weight

    def reach(self) -> Reach:
        r = self.n_fft // self.hop_length
        left, right = (r - 1, 0) if self.causal else (r // 2 - 1 + r % 2, r // 2)
        return Reach(Fraction(left), Fraction(right), Fraction(1, self.hop_length))

    def spectrum(self, x: Tensor) -> Tensor:
        """(B, dim, T) -> complex (B * channels, n_fft // 2 + 1, T), in fp32."""
        h = self.proj(x.transpose(1, 2).float())  # (B, T, C * (n_fft + 2))
        b, t, _ = h.shape
        h = h.reshape(b, t, self.channels, 2, self.n_fft // 2 + 1).permute(0, 2, 3, 4, 1)  # (B, C, 2, F, T)
        mag = torch.exp(h[:, :, 0].clamp(max=self.log_max))
        phase = h[:, :, 1]
        return torch.complex(mag * torch.cos(phase), mag * torch.sin(phase)).flatten(0, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, dim, T) -> (B, C, T * hop)
        b, _, t = x.shape
        with torch.autocast(x.device.type, enabled=False):
            spec = self.spectrum(x)
            if self.causal:
                y = self._overlap_add(spec)
            else:
                n, hop = self.n_fft, self.hop_length
                y = torch.istft(spec, n, hop, n, self.window, center=True, length=t * hop)
        return y.reshape(b, self.channels, t * self.hop_length)

    def _overlap_add(self, spec: Tensor) -> Tensor:
        """Causal synthesis: (B', F, T) -> (B', T * hop); with a stream, adds / carries the tail."""
        hop, r = self.hop_length, self.n_fft // self.hop_length
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=1) * self.window[:, None]  # (B', n_fft, T)
        bp, _, t = frames.shape
        parts = frames.reshape(bp, r, hop, t)
        out = frames.new_zeros(bp, t + r - 1, hop)
        for k in range(r):  # part k of frame j lands on hop j + k
            out[:, k : k + t] += parts[:, k].transpose(1, 2)
        out = out.reshape(bp, -1)
        if self._stream is not None:
            tail = self._stream.get(self)
            if tail is not None:
                out[:, : tail.shape[-1]] += tail
            self._stream[self] = out[:, t * hop :].clone()
        return out[:, : t * hop] / self.envelope.repeat(t)


__all__ = [
    "Reach",
    "reach",
    "chain_reach",
    "StreamingModule",
    "streaming",
    "streaming_layers",
    "inference_weight",
    "refresh_weights",
    "weight_of",
    "reflect_pad",
    "Snake",
    "LayerNorm1d",
    "AudioConv1d",
    "AudioConvTranspose1d",
    "ResidualUnit1d",
    "SEANetEncoder",
    "SEANetDecoder",
    "ConvNeXt1d",
    "ISTFTHead",
]
