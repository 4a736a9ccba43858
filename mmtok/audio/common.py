"""What every audio codec shares: the ``AudioTokenizer`` base (input checks, sample-rate
policy, encode / decode / forward over an encoder -> quantizer -> decoder stack, bitrate,
latency) and the ``to_channels`` / ``resample`` helpers.

Input policy (``check_input``): a ``(B, C, S)`` float32 waveform in [-1, 1] with
``C == tok.channels`` at ``tok.sample_rate``, ``S >= tok.hop_length``. Nothing is fixed
silently: a channel mismatch names ``mmtok.audio.to_channels``, another sample rate needs
``resample=True`` (or ``mmtok.audio.resample``).

Length policy: ``S`` need not be a multiple of ``hop_length``; ``encode`` right-pads with
zeros to ``T = ceil(S / hop_length)`` frames, and ``decode`` returns ``T * hop_length``
samples (crop to ``S`` yourself). ``forward`` returns a reconstruction of exactly ``S``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mmtok.layers.audio import reach
from mmtok.tokenizer import Tokenizer, TokenizerOutput, as_codes, check_range

if TYPE_CHECKING:
    from mmtok.audio.streaming import StreamDecoder, StreamEncoder




def to_channels(x: Tensor, channels: int) -> Tensor:
    """(..., C_in, S) -> (..., channels, S): mono -> multi-channel duplicates, multi-channel
    -> mono averages. Other conversions raise ``ValueError``."""
    c = x.shape[-2]
    if c == channels:
        return x
    if c == 1:
        return x.expand(*x.shape[:-2], channels, x.shape[-1]).contiguous()
    if channels == 1:
        return x.mean(dim=-2, keepdim=True)
    raise ValueError(f"cannot convert {c} channels to {channels} (only mono <-> any is defined)")


def resample(x: Tensor, orig_freq: int, new_freq: int, clamp: bool = True) -> Tensor:
    """Resample (..., S) audio from ``orig_freq`` to ``new_freq`` Hz (torchaudio's band-limited
    sinc) -> (..., ceil(S * new_freq / orig_freq)). ``clamp`` keeps the result in [-1, 1]
    (sinc ringing can overshoot a full-scale input)."""
    for name, v in (("orig_freq", orig_freq), ("new_freq", new_freq)):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{name} must be a positive int (Hz), got {v!r}")
    if orig_freq == new_freq:
        return x
    try:
        import torchaudio.functional as AF
    except ImportError as e:  # pragma: no cover - torchaudio is an install-time choice
        raise ImportError("resampling needs torchaudio: pip install torchaudio (matching your torch)") from e
    y = AF.resample(x, orig_freq, new_freq)
    return y.clamp(-1, 1) if clamp else y


def check_audio(x: Tensor, channels: int, name: str = "audio") -> None:
    """Validate a (B, C, S) float32 waveform in [-1, 1] with ``C == channels``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, {channels}, S), got {type(x).__name__}")
    if x.ndim != 3:
        hint = {
            1: " (one waveform? use x[None, None] for mono)",
            2: f" ((B, S) or (C, S) layout? use x[:, None] for a mono batch, x[None] for one {channels}-channel clip)",
        }.get(x.ndim, "")
        raise ValueError(f"{name} must have shape (B, C, S) with C = {channels}, got {tuple(x.shape)}{hint}")
    if x.shape[1] != channels:
        hint = " (channel-last? use x.transpose(1, 2))" if x.shape[-1] == channels else ""
        raise ValueError(
            f"{name} has {x.shape[1]} channels but the model takes {channels} "
            f"({'mono' if channels == 1 else f'{channels}-channel'}); "
            f"convert with mmtok.audio.to_channels(x, {channels}){hint}"
        )
    check_range(x, name)


class AudioTokenizer(Tokenizer):
    """Base of the audio codecs: ``(B, C, S)`` float32 in [-1, 1] at ``sample_rate`` ->
    codes ``(B, T)`` (one codebook) or ``(B, T, Q)`` (residual levels last), ``T = ceil(S / hop)``.

    A family builds ``self.encoder`` ((B, C, n * hop) -> (B, D, n), with ``hop_length``),
    ``self.quantizer`` (an ``mmtok.quantize`` quantizer of dim D) and ``self.decoder``
    ((B, D, n) -> (B, C, n * hop)), defines ``last_layer_weight`` and calls
    ``self.check_config()``; its config has ``sample_rate``, ``channels``,
    ``segment_length`` (samples of one training item) and ``causal``.
    """

    modality: ClassVar[str] = "audio"

    def check_config(self) -> None:
        """Raise ``ValueError`` for a config no model can run (rate, channels, segment length)."""
        c = self.config
        if not isinstance(c.sample_rate, int) or c.sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive int, got {c.sample_rate!r}")
        if not isinstance(c.channels, int) or c.channels < 1:
            raise ValueError(f"channels must be a positive int, got {c.channels!r}")
        if c.segment_length <= 0 or c.segment_length % self.hop_length:
            raise ValueError(
                f"segment_length ({c.segment_length}) must be a positive multiple of hop_length ({self.hop_length})"
            )

    # --- facts ----------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return int(self.config.sample_rate)

    @property
    def channels(self) -> int:
        return int(self.config.channels)

    @property
    def causal(self) -> bool:
        return bool(self.config.causal)

    @property
    def hop_length(self) -> int:
        """Samples per token frame (product of the encoder strides)."""
        return int(self.encoder.hop_length)

    @property
    def frame_rate(self) -> float:
        """Token frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def token_shape(self) -> tuple[int, ...]:
        return (self.config.segment_length // self.hop_length,)

    @property
    def is_residual(self) -> bool:
        return bool(self.quantizer.is_residual)

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        """One entry per residual level (all levels the quantizer has)."""
        levels = self.quantizer.num_levels if self.is_residual else 1
        return (int(self.quantizer.codebook_size),) * levels

    # --- rate ladder: residual codecs report quality at 1..Q levels -----------------------
    @property
    def ladder_unit(self) -> str:
        return "levels" if self.is_residual else "tokens"

    def rate_ladder(self) -> list[int]:
        """Residual codecs: every level count 1..Q (``encode(x, n_q=k)`` equals the first k levels);
        single-codebook codecs: the full code only."""
        return list(range(1, self.num_codebooks + 1)) if self.is_residual else [self.num_tokens]

    def truncate_codes(self, codes: Tensor, k: int) -> Tensor:
        """The first ``k`` residual levels (``codes[..., :k]``); a single codebook is not truncated."""
        if not self.is_residual:
            return codes
        return codes if k == codes.shape[-1] else codes[..., :k]

    def bits_at(self, k: int) -> float:
        """Bits of one training-size item's codes with ``k`` levels."""
        if not self.is_residual:
            return self.bits_per_item
        return self.num_tokens * sum(math.log2(c) for c in self.codebook_sizes[:k])

    def kbps(self, n_q: int | None = None) -> float:
        """Bitrate in kbit/s of the first ``n_q`` levels (all by default)."""
        n = self._levels(n_q)
        return self.frame_rate * sum(math.log2(k) for k in self.codebook_sizes[:n]) / 1000

    @property
    def receptive_field(self) -> int:
        """Input samples one token frame depends on (its own hop plus the encoder's reach)."""
        r = reach(self.encoder)
        return int(math.ceil(r.left + r.right)) + self.hop_length

    @property
    def lookahead(self) -> int:
        """Future samples an output sample waits for beyond its own frame: 0 when causal,
        else the encoder's right reach plus the decoder's (in samples)."""
        if self.causal:
            return 0
        enc, dec = reach(self.encoder), reach(self.decoder)
        return int(math.ceil(enc.right + dec.right * self.hop_length))

    @property
    def latency(self) -> dict[str, float]:
        """Algorithmic latency: one frame (a frame's codes exist once its hop has been heard)
        plus the lookahead; ``{"samples", "ms", "frame_samples", "lookahead_samples"}``."""
        samples = self.hop_length + self.lookahead
        return {
            "samples": samples,
            "ms": 1000.0 * samples / self.sample_rate,
            "frame_samples": self.hop_length,
            "lookahead_samples": self.lookahead,
        }

    @property
    def last_layer_weight(self) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def preprocessing(self) -> dict[str, Any]:
        """What a dataset delivers: ``{"sample_rate", "channels", "segment_length"}``."""
        return {
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "segment_length": int(self.config.segment_length),
        }

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "frame_rate": float(self.frame_rate),
            "hop_length": self.hop_length,
            "kbps": float(self.kbps()),
            "causal": self.causal,
        }

    # --- checks -----------------------------------------------------------------------------
    def check_input(self, x: Tensor, sample_rate: int | None = None) -> None:
        """Raise ``TypeError`` / ``ValueError`` unless ``x`` is a (B, C, S) float32 waveform in
        [-1, 1] with ``C == channels``, ``S >= hop_length`` and (when given) ``sample_rate ==
        self.sample_rate``."""
        check_audio(x, self.channels)
        if sample_rate is not None and sample_rate != self.sample_rate:
            raise ValueError(
                f"audio at {sample_rate} Hz, but the model runs at {self.sample_rate} Hz; pass resample=True to encode "
                f"or convert with mmtok.audio.resample(x, {sample_rate}, {self.sample_rate})"
            )
        if x.shape[-1] < self.hop_length:
            raise ValueError(
                f"audio too short: {x.shape[-1]} samples, the model needs at least one frame of hop_length = "
                f"{self.hop_length} samples ({1000 * self.hop_length / self.sample_rate:.1f} ms at {self.sample_rate} Hz)"
            )

    def _prepare(self, x: Tensor, sample_rate: int | None, resample_input: bool) -> Tensor:
        """Checks (resampling first when asked) -> x right-padded to a multiple of hop_length."""
        if sample_rate is not None and sample_rate != self.sample_rate and resample_input:
            check_audio(x, self.channels)
            x = resample(x, int(sample_rate), self.sample_rate)
            sample_rate = self.sample_rate
        self.check_input(x, sample_rate)
        return F.pad(x, (0, -x.shape[-1] % self.hop_length))

    def _levels(self, n_q: int | None) -> int:
        """Validated number of levels (None -> all)."""
        total = len(self.codebook_sizes)
        if n_q is None:
            return total
        if isinstance(n_q, bool) or not isinstance(n_q, int) or not 1 <= n_q <= total:
            what = f"1..{total}" if total > 1 else "1 (a single codebook)"
            raise ValueError(f"n_q must be an int in {what}, got {n_q!r}")
        return n_q

    def check_codes(self, codes: Tensor) -> Tensor:
        """Any integer dtype -> int64 on the model's device; raises unless the shape is
        (B, T) (one codebook) or (B, T, Q) with 1 <= Q <= levels (residual), ids in range."""
        codes = as_codes(codes, self.device)
        if self.is_residual:
            if codes.ndim != 3 or not 1 <= codes.shape[-1] <= self.num_codebooks:
                hint = " (one level? use codes[..., None])" if codes.ndim == 2 else ""
                raise ValueError(
                    f"codes must be (B, T, Q) with 1 <= Q <= {self.num_codebooks}, got {tuple(codes.shape)}{hint}"
                )
        elif codes.ndim != 2:
            hint = " (use codes[..., 0])" if codes.ndim == 3 and codes.shape[-1] == 1 else ""
            raise ValueError(f"codes must be (B, T) for a single-codebook model, got {tuple(codes.shape)}{hint}")
        if codes.shape[1] < 1:
            raise ValueError(f"codes have no frames (shape {tuple(codes.shape)})")
        lo, hi = int(codes.min()), int(codes.max())
        if lo < 0 or hi >= self.codebook_size:
            raise ValueError(f"codes must lie in [0, {self.codebook_size}), got values in [{lo}, {hi}]")
        return codes

    # --- protocol ---------------------------------------------------------------------------
    def quantize_latent(self, z: Tensor, n_q: int | None = None) -> Tensor:
        """Latent frames (B, D, T) -> codes (B, T) or (B, T, n_q) (eval-mode lookup)."""
        n = self._levels(n_q)
        zc = z.transpose(1, 2).float()
        return self.quantizer.encode(zc, n_levels=n) if self.is_residual else self.quantizer.encode(zc)

    def dequantize(self, codes: Tensor) -> Tensor:
        """Checked codes -> latent frames (B, D, T) (``codes.shape[-1]`` levels for residual codes)."""
        z = self.quantizer.decode(codes)  # (B, T, D)
        return z.transpose(1, 2).to(self._decoder_dtype())

    def _decoder_dtype(self) -> torch.dtype:
        return next(self.decoder.parameters()).dtype

    @torch.no_grad()
    def encode(
        self, x: Tensor, n_q: int | None = None, sample_rate: int | None = None, resample: bool = False
    ) -> Tensor:
        """x: (B, C, S) float32 in [-1, 1] -> codes (B, T) or (B, T, n_q) int64, T = ceil(S / hop).

        ``n_q`` (residual levels kept, default all) is honoured in train and eval mode.
        ``sample_rate`` other than ``self.sample_rate`` raises unless ``resample=True``.
        """
        x = self._prepare(x, sample_rate, resample)
        return self.quantize_latent(self.encoder(x), n_q)

    def decode(self, codes: Tensor) -> Tensor:
        """codes (B, T) / (B, T, Q) of any integer dtype -> (B, C, T * hop) in [-1, 1].
        Residual codes decode with their ``Q`` levels (fewer = lower bitrate)."""
        codes = self.check_codes(codes)
        return self.decoder(self.dequantize(codes)).clamp(-1, 1)

    def forward(self, x: Tensor) -> TokenizerOutput:
        """Training pass: recon (B, C, S) (not clamped), codes (-1 marks levels dropped by
        quantizer dropout), the quantizer's aux loss and codebook metrics."""
        self.check_input(x)
        s = x.shape[-1]
        z = self.encoder(F.pad(x, (0, -s % self.hop_length)))  # (B, D, T)
        q = self.quantizer(z.transpose(1, 2))
        recon = self.decoder(q.quantized.transpose(1, 2))[..., :s]
        return TokenizerOutput(recon=recon, codes=q.codes, loss=q.loss, metrics=dict(q.metrics))

    # --- streaming and long files ---------------------------------------------------------
    def stream_encoder(self, n_q: int | None = None, compile: bool = False) -> "StreamEncoder":
        """A stateful chunk-by-chunk encoder (causal models only); see ``mmtok.audio.streaming``.
        ``compile=True``: each push of the steady chunk shape runs a ``torch.compile``-d step."""
        from mmtok.audio.streaming import StreamEncoder

        return StreamEncoder(self, n_q=n_q, compile=compile)

    def stream_decoder(self, compile: bool = False) -> "StreamDecoder":
        """A stateful chunk-by-chunk decoder (causal models only); see ``mmtok.audio.streaming``.
        ``compile=True``: each push of the steady chunk shape runs a ``torch.compile``-d step."""
        from mmtok.audio.streaming import StreamDecoder

        return StreamDecoder(self, compile=compile)

    def encode_long(self, wav: Tensor, **kwargs: Any) -> Tensor:
        """Windowed encode of a long (C, S) / (1, C, S) file; see ``mmtok.audio.long.encode_long``."""
        from mmtok.audio.long import encode_long

        return encode_long(self, wav, **kwargs)

    def decode_long(self, codes: Tensor, **kwargs: Any) -> Tensor:
        """Windowed decode of long codes (T[, Q]); see ``mmtok.audio.long.decode_long``."""
        from mmtok.audio.long import decode_long

        return decode_long(self, codes, **kwargs)
