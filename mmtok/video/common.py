"""What every video tokenizer shares: the ``VideoTokenizer`` base (input checks, the
frame-count policy, encode / decode / forward over an encoder -> quantizer -> decoder
stack, image = video with T = 1) and the ``pad_frames`` helper.

Input policy (``check_input``): a ``(B, C, T, H, W)`` float32 clip in [-1, 1] with
``C == in_channels``, H and W multiples of ``spatial_factor`` and **a clip of 1 + n *
temporal_factor frames** (1, 5, 9, 17, ... for a factor of 4): frame 0 gets a latent frame
of its own, every later latent frame covers ``temporal_factor`` new frames. Nothing is fixed
silently: other lengths raise; ``pad_frames(x, temporal_factor)`` (or ``encode(x,
pad=True)``) right-pads by repeating the last frame, and ``decode(codes, num_frames=T)``
trims the padding off again.

Codes: ``(B, t, h, w)`` int64, ``t = 1 + (T - 1) / temporal_factor``; latent frame ``j``
depends on frames ``<= temporal_factor * j`` only (causal models), so latent frame 0 is
the code grid of frame 0 as an image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from mmtok.quantize import Quantizer, codes_to_grid, from_channel_last, grid_to_codes, to_channel_last
from mmtok.tokenizer import Tokenizer, TokenizerOutput, as_codes, check_range

if TYPE_CHECKING:
    from mmtok.video.long import StreamDecoder, StreamEncoder


def is_valid_length(num_frames: int, temporal_factor: int) -> bool:
    """True for ``1 + n * temporal_factor`` frames (n >= 0)."""
    return num_frames >= 1 and (num_frames - 1) % temporal_factor == 0


def latent_frames(num_frames: int, temporal_factor: int) -> int:
    """Latent frames of a ``1 + n * temporal_factor``-frame clip: ``1 + n``."""
    if not is_valid_length(num_frames, temporal_factor):
        raise ValueError(_length_message(num_frames, temporal_factor))
    return 1 + (num_frames - 1) // temporal_factor


def pixel_frames(num_latent: int, temporal_factor: int) -> int:
    """Frames ``t`` latent frames decode to: ``1 + (t - 1) * temporal_factor``."""
    return 1 + (num_latent - 1) * temporal_factor


def padded_length(num_frames: int, temporal_factor: int) -> int:
    """The smallest valid clip length ``1 + n * temporal_factor >= num_frames``."""
    return 1 + -(-(num_frames - 1) // temporal_factor) * temporal_factor


def _length_message(num_frames: int, temporal_factor: int, name: str = "video") -> str:
    f = temporal_factor
    ok = ", ".join(str(1 + k * f) for k in range(4))
    return (
        f"{name} has {num_frames} frames, but the model takes a clip of 1 + {f}n frames ({ok}, ...); "
        f"pad with mmtok.video.pad_frames(x, {f}) (repeats the last frame, to {padded_length(max(num_frames, 1), f)}) "
        f"or encode(x, pad=True), then decode(codes, num_frames={num_frames}) trims it"
    )


def check_video(x: Tensor, in_channels: int, spatial_factor: int, temporal_factor: int, name: str = "video") -> None:
    """Validate a (B, C, T, H, W) float32 clip in [-1, 1]: C == in_channels, H and W multiples of
    ``spatial_factor``, T = 1 + n * ``temporal_factor``. Raises ``TypeError`` / ``ValueError``."""
    _check_layout(x, in_channels, name)
    t, h, w = (int(s) for s in x.shape[2:])
    if h % spatial_factor or w % spatial_factor:
        f = spatial_factor
        raise ValueError(
            f"{name} height and width must be multiples of {f}, got {h}x{w}; "
            f"resize or crop to e.g. {max(f, h // f * f)}x{max(f, w // f * f)} (or use encode_tiled for large frames)"
        )
    if not is_valid_length(t, temporal_factor):
        raise ValueError(_length_message(t, temporal_factor, name))
    check_range(x, name)


def _check_layout(x: Tensor, in_channels: int, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, {in_channels}, T, H, W), got {type(x).__name__}")
    if x.ndim != 5:
        hint = {
            4: " (an image batch (B, C, H, W)? use x[:, :, None] for T = 1, or tok.encode_image(x))",
            3: " (one image? use x[None, :, None])",
        }.get(x.ndim, "")
        raise ValueError(f"{name} must have shape (B, {in_channels}, T, H, W), got {tuple(x.shape)}{hint}")
    if x.shape[1] != in_channels:
        hint = ""
        if x.shape[2] == in_channels:
            hint = " ((B, T, C, H, W) layout? use x.transpose(1, 2))"
        elif x.shape[-1] == in_channels:
            hint = " (channel-last? use x.permute(0, 4, 1, 2, 3))"
        raise ValueError(f"{name} must have {in_channels} channels on axis 1, got shape {tuple(x.shape)}{hint}")


def pad_frames(x: Tensor, temporal_factor: int) -> Tensor:
    """Right-pad a (B, C, T, H, W) clip to ``1 + n * temporal_factor`` frames by repeating its
    last frame (unchanged when T already fits). ``decode(codes, num_frames=T)`` trims back."""
    if not isinstance(x, Tensor) or x.ndim != 5:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"pad_frames takes a (B, C, T, H, W) clip, got {shape}")
    if not isinstance(temporal_factor, int) or temporal_factor < 1:
        raise ValueError(f"temporal_factor must be a positive int, got {temporal_factor!r}")
    t = x.shape[2]
    if t < 1:
        raise ValueError("cannot pad a clip with no frames")
    extra = padded_length(t, temporal_factor) - t
    if extra == 0:
        return x
    return torch.cat([x, x[:, :, -1:].expand(-1, -1, extra, -1, -1)], dim=2)


class VideoTokenizer(Tokenizer):
    """Base of the video tokenizers: ``(B, C, T, H, W)`` float32 in [-1, 1] -> codes
    ``(B, t, h, w)``, ``t = 1 + (T - 1) / temporal_factor``, ``h, w = H, W / spatial_factor``.

    A family builds ``self.encoder`` ((B, C, 1 + f_t n, H, W) -> (B, D, 1 + n, h, w)),
    ``self.quantizer`` (an ``mmtok.quantize`` quantizer of dim D) and ``self.decoder`` (the
    inverse map), sets ``temporal_factor`` / ``spatial_factor`` and ``last_layer_weight``;
    its config has ``image_size`` (training H = W), ``num_frames`` (training T),
    ``in_channels`` and ``causal``.
    """

    modality: ClassVar[str] = "video"
    encoder: nn.Module
    decoder: nn.Module
    quantizer: Quantizer

    # --- facts ---------------------------------------------------------------------------
    @property
    def temporal_factor(self) -> int:
        return int(self.config.temporal_factor)

    @property
    def spatial_factor(self) -> int:
        return int(self.config.spatial_factor)

    @property
    def compression(self) -> tuple[int, int, int]:
        """(time, height, width) downsampling factors, e.g. (4, 8, 8)."""
        return (self.temporal_factor, self.spatial_factor, self.spatial_factor)

    @property
    def causal(self) -> bool:
        return bool(self.config.causal)

    @property
    def in_channels(self) -> int:
        return int(self.config.in_channels)

    @property
    def token_shape(self) -> tuple[int, ...]:
        """(t, h, w) of one training clip (``num_frames`` frames of ``image_size`` pixels)."""
        g = int(self.config.image_size) // self.spatial_factor
        return (latent_frames(int(self.config.num_frames), self.temporal_factor), g, g)

    @property
    def bits_per_clip(self) -> float:
        """Alias of ``bits_per_item``: bits of one training clip's codes."""
        return self.bits_per_item

    def preprocessing(self) -> dict[str, Any]:
        """``{"resolution": image_size, "num_frames": num_frames}``: what a dataset delivers."""
        return {"resolution": int(self.config.image_size), "num_frames": int(self.config.num_frames)}

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "temporal_factor": self.temporal_factor,
            "spatial_factor": self.spatial_factor,
            "compression": list(self.compression),
            "causal": self.causal,
        }

    # --- checks --------------------------------------------------------------------------
    def check_input(self, x: Tensor) -> None:
        """Raise ``TypeError`` / ``ValueError`` (see ``Tokenizer.check_input`` and the module
        docstring) unless ``x`` is a valid (B, C, 1 + n * temporal_factor, H, W) clip."""
        check_video(x, self.in_channels, self.spatial_factor, self.temporal_factor)

    def check_codes(self, codes: Tensor) -> Tensor:
        """Any integer dtype -> int64 on the model's device; raises unless (B, t, h, w) with ids in range."""
        codes = as_codes(codes, self.device)
        if codes.ndim != 4:
            hint = " (image codes (B, h, w)? use codes[:, None] or tok.decode_image)" if codes.ndim == 3 else ""
            raise ValueError(f"codes must be a (B, t, h, w) grid, got shape {tuple(codes.shape)}{hint}")
        if min(codes.shape[1:]) < 1:
            raise ValueError(f"codes have an empty axis (shape {tuple(codes.shape)})")
        lo, hi = int(codes.min()), int(codes.max())
        if lo < 0 or hi >= self.codebook_size:
            raise ValueError(f"codes must lie in [0, {self.codebook_size}), got values in [{lo}, {hi}]")
        return codes

    def _trim(self, video: Tensor, num_frames: int | None) -> Tensor:
        """Decoded (B, C, 1 + (t - 1) f, H, W) -> its first ``num_frames`` (the length before ``pad_frames``)."""
        if num_frames is None:
            return video
        total, f = video.shape[2], self.temporal_factor
        if not isinstance(num_frames, int) or not max(1, total - f + 1) <= num_frames <= total:
            raise ValueError(
                f"num_frames={num_frames!r} does not fit codes that decode to {total} frames "
                f"(a clip padded to {total} frames had {max(1, total - f + 1)}..{total})"
            )
        return video[:, :, :num_frames]

    # --- protocol ------------------------------------------------------------------------
    def quantize_latent(self, z: Tensor) -> Tensor:
        """Latent map (B, D, t, h, w) -> codes (B, t, h, w) (eval-mode lookup)."""
        zc, spatial = to_channel_last(z.float())
        return codes_to_grid(self.quantizer.encode(self._norm_latent(zc)), spatial)

    def _norm_latent(self, z: Tensor) -> Tensor:
        """Channel-last latents (B, N, D) through the family's optional ``self.latent_norm``
        module (a per-channel standardisation before the quantizer); unchanged without one."""
        norm = getattr(self, "latent_norm", None)  # not a class attribute: it would shadow the submodule
        return z if norm is None else norm(z)

    def dequantize(self, codes: Tensor) -> Tensor:
        """Checked codes (B, t, h, w) -> latent map (B, D, t, h, w) in the decoder's dtype."""
        z = self.quantizer.decode(grid_to_codes(codes, 3))
        return from_channel_last(z.to(next(self.decoder.parameters()).dtype), tuple(codes.shape[1:4]))

    @torch.no_grad()
    def encode(self, x: Tensor, pad: bool = False) -> Tensor:
        """x: (B, C, T, H, W) float32 in [-1, 1] -> codes (B, 1 + (T - 1) / f_t, H / f_s, W / f_s) int64.

        T must be ``1 + n * temporal_factor``; ``pad=True`` first applies ``pad_frames``
        (repeat the last frame), so any T >= 1 encodes (decode with ``num_frames=T``)."""
        if pad:
            _check_layout(x, self.in_channels, "video")
            x = pad_frames(x, self.temporal_factor)
        self.check_input(x)
        return self.quantize_latent(self.encoder(x))

    def decode(self, codes: Tensor, num_frames: int | None = None) -> Tensor:
        """codes (B, t, h, w) of any integer dtype -> (B, C, 1 + (t - 1) f_t, h f_s, w f_s) in [-1, 1];
        ``num_frames`` (the length before ``pad_frames``) trims the padding."""
        codes = self.check_codes(codes)
        return self._trim(self.decoder(self.dequantize(codes)).clamp(-1, 1), num_frames)

    def forward(self, x: Tensor) -> TokenizerOutput:
        """Training pass: recon (B, C, T, H, W) (not clamped), codes (B, t, h, w), the quantizer's
        aux loss and codebook metrics."""
        self.check_input(x)
        z, spatial = to_channel_last(self.encoder(x))
        q = self.quantizer(self._norm_latent(z))
        recon = self.decoder(from_channel_last(q.quantized, spatial))
        return TokenizerOutput(recon=recon, codes=codes_to_grid(q.codes, spatial), loss=q.loss, metrics=dict(q.metrics))

    # --- images: a video of one frame ----------------------------------------------------
    def joint_modalities(self) -> tuple[str, ...]:
        """Image batches train the same weights (an image is a clip of one frame)."""
        return ("image",)

    def joint_preprocessing(self, modality: str) -> dict[str, Any]:
        if modality != "image":
            return super().joint_preprocessing(modality)
        return {"resolution": int(self.config.image_size)}

    def from_joint(self, x: Tensor, modality: str) -> Tensor:
        """Images (B, C, H, W) -> 1-frame clips (B, C, 1, H, W)."""
        if modality != "image":
            return super().from_joint(x, modality)
        if x.ndim != 4:
            raise ValueError(f"image batches for joint training must be (B, C, H, W), got {tuple(x.shape)}")
        return x[:, :, None]

    @torch.no_grad()
    def encode_image(self, x: Tensor) -> Tensor:
        """Images (B, C, H, W) -> codes (B, h, w); equals ``encode(x[:, :, None])[:, 0]``."""
        if not isinstance(x, Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            hint = " (a clip? use encode)" if isinstance(x, Tensor) and x.ndim == 5 else ""
            raise ValueError(f"encode_image takes images (B, {self.in_channels}, H, W), got {shape}{hint}")
        return self.encode(x[:, :, None])[:, 0]

    def decode_image(self, codes: Tensor) -> Tensor:
        """Image codes (B, h, w) or (B, 1, h, w) -> images (B, C, H, W) in [-1, 1]."""
        if isinstance(codes, Tensor) and codes.ndim == 3:
            codes = codes[:, None]
        if isinstance(codes, Tensor) and codes.ndim == 4 and codes.shape[1] != 1:
            raise ValueError(f"decode_image takes (B, h, w) or (B, 1, h, w) codes, got {tuple(codes.shape)}; use decode")
        return self.decode(codes)[:, :, 0]

    # --- long clips and large frames (mmtok.video.long) -----------------------------------
    def stream_encoder(self) -> "StreamEncoder":
        """A stateful window-by-window encoder (causal models); see ``mmtok.video.long``."""
        from mmtok.video.long import StreamEncoder

        return StreamEncoder(self)

    def stream_decoder(self) -> "StreamDecoder":
        """A stateful window-by-window decoder (causal models); see ``mmtok.video.long``."""
        from mmtok.video.long import StreamDecoder

        return StreamDecoder(self)

    def encode_long(self, video: Tensor, **kwargs: Any) -> Tensor:
        """Temporal windows with carried causal state; see ``mmtok.video.long.encode_long``."""
        from mmtok.video.long import encode_long

        return encode_long(self, video, **kwargs)

    def decode_long(self, codes: Tensor, **kwargs: Any) -> Tensor:
        """Windowed decode; see ``mmtok.video.long.decode_long``."""
        from mmtok.video.long import decode_long

        return decode_long(self, codes, **kwargs)

    def encode_tiled(self, video: Tensor, **kwargs: Any) -> Tensor:
        """Overlapping spatial tiles; see ``mmtok.video.long.encode_tiled``."""
        from mmtok.video.long import encode_tiled

        return encode_tiled(self, video, **kwargs)

    def decode_tiled(self, codes: Tensor, **kwargs: Any) -> Tensor:
        """Overlapping spatial tiles blended linearly; see ``mmtok.video.long.decode_tiled``."""
        from mmtok.video.long import decode_tiled

        return decode_tiled(self, codes, **kwargs)
