"""Long clips in bounded memory (temporal windows) and large frames (spatial tiles).

    codes = tok.encode_long(video, window=16)          # (B, 3, T, H, W) -> (B, t, h, w)
    video_hat = tok.decode_long(codes, window=4)       # -> (B, 3, 1 + 4 (t - 1), H, W)
    codes = tok.encode_tiled(big)                      # frames larger than the training size
    big_hat = tok.decode_tiled(codes)                  # overlapping tiles, blended linearly

Temporal windows, causal models (exact). Every causal layer carries its left context from
one window to the next (``mmtok.layers.conv3d``: a conv keeps the inputs its next output
still needs, starting from the replicated first frame as offline; a temporal upsampler
remembers that frame 0 was seen), so the windowed result *equals* the whole-clip encode /
decode, up to float summation order. The first window holds frame 0 plus ``window`` frames,
every next one ``window`` frames (``window`` a multiple of ``temporal_factor``); only one
window's activations (plus a few frames of context per layer) are in memory.
``StreamEncoder`` / ``StreamDecoder`` expose the same state for chunks of any length.

Temporal windows, non-causal models (approximate). Windows of latent frames overlap by
``overlap`` latent frames and are re-encoded from scratch; codes are cut in the middle of
each overlap and decoded frames crossfade linearly across it.

Spatial tiles (any model, approximate: per-frame norms and attention see one tile). Tiles of
``tile`` pixels overlap by ``overlap`` pixels (multiples of ``spatial_factor``); encode keeps
each tile's codes up to the middle of its overlaps, decode blends the tiles' pixels with
linear ramps over every overlap (weights normalised to sum to one, so no seam).
``tiling_report`` measures the error next to tile boundaries and in tile interiors;
``window_report`` the windowed vs whole-clip difference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from mmtok.layers.audio import streaming
from mmtok.tokenizer import check_range
from mmtok.video.common import _check_layout, latent_frames, pad_frames, pixel_frames

if TYPE_CHECKING:
    from mmtok.video.common import VideoTokenizer


def _require_causal(tok: "VideoTokenizer", what: str) -> None:
    if not tok.causal:
        name = tok.variant_name or type(tok).__name__
        raise ValueError(
            f"{name} is not causal (its temporal convs look ahead), so {what} cannot carry state; "
            f"build it with causal=True or use encode_long / decode_long, which re-encode overlapping windows"
        )


def _batch(b: int, seen: int | None) -> int:
    if seen is not None and b != seen:
        raise ValueError(f"this stream carries state for a batch of {seen}, got a chunk of batch {b}")
    return b


class StreamEncoder:
    """Chunk-by-chunk encoder of a causal video tokenizer: ``push(frames (B, C, n, H, W))`` ->
    codes ``(B, t, h, w)`` of the latent frames completed so far (frame 0 completes latent 0;
    then every ``temporal_factor`` frames one more). ``flush()`` pads the frames still pending
    by repeating the last one (as ``pad_frames``) and encodes them. The concatenated codes
    equal ``tok.encode`` of the whole (padded) clip."""

    def __init__(self, tok: "VideoTokenizer") -> None:
        _require_causal(tok, "streamed encoding")
        self.tok = tok
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next push starts a new clip."""
        self.state: dict[Any, Tensor] = {}
        self.pending: Tensor | None = None
        self.frames = 0  # frames encoded so far
        self.batch_size: int | None = None
        self.frame_size: tuple[int, int] | None = None

    def _empty(self, like: Tensor) -> Tensor:
        f = self.tok.spatial_factor
        return torch.zeros(like.shape[0], 0, like.shape[3] // f, like.shape[4] // f, dtype=torch.long, device=like.device)

    @torch.no_grad()
    def push(self, chunk: Tensor) -> Tensor:
        """chunk: (B, C, n, H, W) float32 in [-1, 1], n >= 0 -> codes (B, t, h, w), t >= 0."""
        tok = self.tok
        _check_layout(chunk, tok.in_channels, "chunk")
        size = (int(chunk.shape[3]), int(chunk.shape[4]))
        if size[0] % tok.spatial_factor or size[1] % tok.spatial_factor:
            raise ValueError(f"chunk height and width must be multiples of {tok.spatial_factor}, got {size}")
        if self.frame_size is not None and size != self.frame_size:
            raise ValueError(f"this stream has {self.frame_size} frames, got a chunk of {size}")
        self.frame_size = size
        self.batch_size = _batch(chunk.shape[0], self.batch_size)
        if chunk.shape[2]:
            check_range(chunk, "chunk")
        x = chunk if self.pending is None else torch.cat([self.pending, chunk], dim=2)
        f = tok.temporal_factor
        n = x.shape[2]
        ready = (1 + (n - 1) // f * f if n else 0) if self.frames == 0 else n // f * f
        self.pending = x[:, :, ready:] if ready < n else None
        if ready == 0:
            return self._empty(x)
        with streaming(tok.encoder, self.state):
            z = tok.encoder(x[:, :, :ready])
        self.frames += ready
        return tok.quantize_latent(z)

    @torch.no_grad()
    def flush(self) -> Tensor:
        """Codes of the pending frames, padded by repeating the last one; ``(B, 0, h, w)`` when none."""
        if self.pending is None:
            b = self.batch_size or 1
            h, w = self.frame_size or (0, 0)
            return self._empty(torch.zeros(b, 1, 1, h, w))
        last, self.pending = self.pending, None
        f = self.tok.temporal_factor
        extra = (-(last.shape[2] - (1 if self.frames == 0 else 0))) % f
        if extra:
            last = torch.cat([last, last[:, :, -1:].expand(-1, -1, extra, -1, -1)], dim=2)
        return self.push(last)


class StreamDecoder:
    """Chunk-by-chunk decoder of a causal video tokenizer: ``push(codes (B, t, h, w))`` ->
    frames ``(B, C, n, H, W)`` in [-1, 1] (the first push: ``1 + (t - 1) f`` frames, later
    ones ``t f``); each frame is final when returned. The concatenation equals ``tok.decode``."""

    def __init__(self, tok: "VideoTokenizer") -> None:
        _require_causal(tok, "streamed decoding")
        self.tok = tok
        self.reset()

    def reset(self) -> None:
        self.state: dict[Any, Tensor] = {}
        self.latents = 0
        self.batch_size: int | None = None

    @torch.no_grad()
    def push(self, codes: Tensor) -> Tensor:
        """codes: (B, t, h, w) of any integer dtype -> (B, C, frames, h f_s, w f_s)."""
        tok = self.tok
        if isinstance(codes, Tensor) and codes.ndim == 4 and codes.shape[1] == 0:
            f = tok.spatial_factor
            return torch.zeros(codes.shape[0], tok.in_channels, 0, codes.shape[2] * f, codes.shape[3] * f,
                               device=tok.device)
        codes = tok.check_codes(codes)
        self.batch_size = _batch(codes.shape[0], self.batch_size)
        with streaming(tok.decoder, self.state):
            y = tok.decoder(tok.dequantize(codes))
        self.latents += codes.shape[1]
        return y.clamp(-1, 1)


# --- temporal windows ---------------------------------------------------------------------
def _prepare(tok: "VideoTokenizer", video: Tensor, pad: bool) -> Tensor:
    if pad:
        _check_layout(video, tok.in_channels, "video")
        video = pad_frames(video, tok.temporal_factor)
    tok.check_input(video)
    return video


def _window(tok: "VideoTokenizer", window: int | None, name: str, latent: bool) -> int:
    f = tok.temporal_factor
    if window is None:
        return (tok.token_shape[0] - 1 or 1) if latent else (int(tok.config.num_frames) - 1 or f)
    if latent:
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"{name} (latent frames per window) must be a positive int, got {window!r}")
    elif not isinstance(window, int) or window < f or window % f:
        raise ValueError(f"{name} (frames per window) must be a positive multiple of temporal_factor {f}, got {window!r}")
    return window


def plan_spans(total: int, span: int, overlap: int) -> tuple[list[tuple[int, int]], list[int]]:
    """Spans ``[(start, end)]`` of ``span`` units covering ``total`` (a step of ``span - overlap``,
    the last span moved back to end at ``total``) and the cut between consecutive spans (the
    middle of their overlap). One span ``[(0, total)]`` when ``total <= span``."""
    if span < 1 or overlap < 0 or 2 * overlap > span:
        raise ValueError(f"need span >= 1 and 0 <= overlap <= span / 2, got span={span}, overlap={overlap}")
    if total <= span:
        return [(0, total)], []
    starts, s = [], 0
    while s + span < total:
        starts.append(s)
        s += span - overlap
    starts.append(total - span)
    spans = [(a, a + span) for a in starts]
    cuts = [(a + b) // 2 for (_, b), (a, _) in zip(spans, spans[1:])]
    return spans, cuts


def blend_weights(spans: list[tuple[int, int]], total: int, device: torch.device | None = None) -> list[Tensor]:
    """Per span a weight over its own positions: a linear ramp up across its overlap with the
    previous span, down across the one with the next (1 elsewhere); at every position of
    ``[0, total)`` the weights of the spans covering it sum to one."""
    raw = []
    for i, (a, b) in enumerate(spans):
        w = torch.ones(b - a, device=device)
        pos = torch.arange(a, b, device=device, dtype=torch.float32)
        if i > 0 and spans[i - 1][1] > a:
            e = spans[i - 1][1]
            w = w * torch.where(pos < e, (pos - a + 0.5) / (e - a), torch.ones_like(pos))
        if i < len(spans) - 1 and spans[i + 1][0] < b:
            s = spans[i + 1][0]
            w = w * torch.where(pos >= s, (b - pos - 0.5) / (b - s), torch.ones_like(pos))
        raw.append(w)
    norm = torch.zeros(total, device=device)
    for (a, b), w in zip(spans, raw):
        norm[a:b] += w
    return [w / norm[a:b] for (a, b), w in zip(spans, raw)]


@torch.no_grad()
def encode_long(
    tok: "VideoTokenizer", video: Tensor, window: int | None = None, overlap: int | None = None, pad: bool = False
) -> Tensor:
    """Encode a long (B, C, T, H, W) clip window by window -> codes (B, t, h, w), t = 1 + (T - 1) / f_t.

    ``window``: frames per window after frame 0, a multiple of ``temporal_factor`` (default
    ``num_frames - 1`` of the training clip). Causal models carry state: the codes equal
    ``tok.encode(video)``. Non-causal models re-encode windows that overlap by ``overlap``
    latent frames (default half a window, >= 2; the default window is at least 4 latent
    frames after frame 0) and cut in the middle. ``pad=True`` applies
    ``pad_frames`` first.
    """
    x = _prepare(tok, video, pad)
    step = _window(tok, window, "window", latent=False)
    if tok.causal:
        enc = StreamEncoder(tok)
        pieces = [enc.push(x[:, :, : 1 + step])]
        pieces += [enc.push(x[:, :, s : s + step]) for s in range(1 + step, x.shape[2], step)]
        return torch.cat(pieces, dim=1)
    f = tok.temporal_factor
    total = latent_frames(x.shape[2], f)
    span = max(step // f, 4 if window is None else 1) + 1  # latent frames per window (its own frame 0 included)
    ov = _overlap(span, overlap)
    spans, cuts = plan_spans(total, span, ov)
    bounds = [0, *cuts, total]
    pieces = []
    for i, (a, b) in enumerate(spans):
        codes = tok.encode(x[:, :, a * f : (b - 1) * f + 1])  # its latent 0 sees frame a * f only
        pieces.append(codes[:, bounds[i] - a : bounds[i + 1] - a])
    return torch.cat(pieces, dim=1)


def _overlap(span: int, overlap: int | None) -> int:
    ov = max(2, span // 2) if overlap is None else overlap
    if not isinstance(ov, int) or not 2 <= ov <= span // 2:
        raise ValueError(
            f"a non-causal model needs 2 <= overlap <= {span // 2} latent frames for windows of {span}, got {ov!r} "
            "(use a longer window)"
        )
    return ov


@torch.no_grad()
def decode_long(
    tok: "VideoTokenizer", codes: Tensor, window: int | None = None, overlap: int | None = None,
    num_frames: int | None = None,
) -> Tensor:
    """Decode long codes (B, t, h, w) window by window -> (B, C, 1 + (t - 1) f_t, H, W) in [-1, 1].

    ``window``: latent frames per window after latent 0 (default: the training clip's).
    Causal models carry state (equals ``tok.decode``); non-causal ones decode windows that
    overlap by ``overlap`` latent frames (default half a window, >= 2) and crossfade them
    linearly. ``num_frames`` trims padding as in ``decode``.
    """
    codes = tok.check_codes(codes)
    step = _window(tok, window, "window", latent=True)
    if tok.causal:
        dec = StreamDecoder(tok)
        pieces = [dec.push(codes[:, : 1 + step])]
        pieces += [dec.push(codes[:, s : s + step]) for s in range(1 + step, codes.shape[1], step)]
        return tok._trim(torch.cat(pieces, dim=2), num_frames)
    f, total = tok.temporal_factor, codes.shape[1]
    span = max(step, 4 if window is None else 1) + 1
    spans, _ = plan_spans(total, span, _overlap(span, overlap))
    frames = [(a * f, (b - 1) * f + 1) for a, b in spans]  # pixel frames each window decodes to
    weights = blend_weights(frames, pixel_frames(total, f), device=codes.device)
    out = None
    for (a, b), (fa, fb), w in zip(spans, frames, weights):
        y = tok.decode(codes[:, a:b]).float()
        if out is None:
            out = y.new_zeros(*y.shape[:2], pixel_frames(total, f), *y.shape[3:])
        out[:, :, fa:fb] += y * w[:, None, None]
    assert out is not None
    return tok._trim(out.clamp(-1, 1), num_frames)


# --- spatial tiles ------------------------------------------------------------------------
def _pair(v: int | tuple[int, int], name: str) -> tuple[int, int]:
    p = (v, v) if isinstance(v, int) else tuple(v)
    if len(p) != 2 or not all(isinstance(a, int) and a >= 0 for a in p):
        raise ValueError(f"{name} must be a non-negative int or an (H, W) pair of ints, got {v!r}")
    return p  # type: ignore[return-value]


def _tiling(tok: "VideoTokenizer", tile: Any, overlap: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    """Pixel tile / overlap -> latent units per axis (checked)."""
    f = tok.spatial_factor
    t = _pair(int(tok.config.image_size) if tile is None else tile, "tile")
    o = _pair(tuple(v // 4 // f * f for v in t) if overlap is None else overlap, "overlap")
    for name, v in (("tile", t), ("overlap", o)):
        if v[0] % f or v[1] % f:
            raise ValueError(f"{name} {v} must be made of multiples of spatial_factor {f} pixels")
    if min(t) < f or o[0] * 2 > t[0] or o[1] * 2 > t[1]:
        raise ValueError(f"need tile >= {f} pixels and overlap <= tile / 2, got tile={t}, overlap={o}")
    return (t[0] // f, t[1] // f), (o[0] // f, o[1] // f)


@torch.no_grad()
def encode_tiled(
    tok: "VideoTokenizer", video: Tensor, tile: int | tuple[int, int] | None = None,
    overlap: int | tuple[int, int] | None = None, window: int | None = None, pad: bool = False,
) -> Tensor:
    """Encode (B, C, T, H, W) frames larger than the training size tile by tile -> (B, t, h, w).

    ``tile`` / ``overlap`` in pixels, multiples of ``spatial_factor`` (default: the training
    ``image_size``, a quarter of it). Each tile's codes are kept up to the middle of its
    overlaps. ``window`` also windows time (``encode_long``) inside each tile.
    """
    x = _prepare(tok, video, pad)
    f = tok.spatial_factor
    (th, tw), (oh, ow) = _tiling(tok, tile, overlap)
    h, w = x.shape[3] // f, x.shape[4] // f
    (ys, ycuts), (xs, xcuts) = plan_spans(h, th, oh), plan_spans(w, tw, ow)
    yb, xb = [0, *ycuts, h], [0, *xcuts, w]
    rows = []
    for i, (ya, ye) in enumerate(ys):
        row = []
        for j, (xa, xe) in enumerate(xs):
            sub = x[..., ya * f : ye * f, xa * f : xe * f]
            codes = encode_long(tok, sub, window) if window is not None else tok.encode(sub)
            row.append(codes[:, :, yb[i] - ya : yb[i + 1] - ya, xb[j] - xa : xb[j + 1] - xa])
        rows.append(torch.cat(row, dim=3))
    return torch.cat(rows, dim=2)


@torch.no_grad()
def decode_tiled(
    tok: "VideoTokenizer", codes: Tensor, tile: int | tuple[int, int] | None = None,
    overlap: int | tuple[int, int] | None = None, window: int | None = None, num_frames: int | None = None,
) -> Tensor:
    """Decode (B, t, h, w) codes tile by tile -> (B, C, T, h f, w f) in [-1, 1], blending
    overlapping tiles with linear ramps (``blend_weights``). ``tile`` / ``overlap`` in pixels as
    in ``encode_tiled``; ``window`` also windows time (``decode_long``) inside each tile."""
    codes = tok.check_codes(codes)
    f = tok.spatial_factor
    (th, tw), (oh, ow) = _tiling(tok, tile, overlap)
    h, w = codes.shape[2], codes.shape[3]
    ys, _ = plan_spans(h, th, oh)
    xs, _ = plan_spans(w, tw, ow)
    wy = blend_weights([(a * f, b * f) for a, b in ys], h * f, codes.device)
    wx = blend_weights([(a * f, b * f) for a, b in xs], w * f, codes.device)
    out = None
    for (ya, ye), vy in zip(ys, wy):
        for (xa, xe), vx in zip(xs, wx):
            sub = codes[:, :, ya:ye, xa:xe]
            y = (decode_long(tok, sub, window) if window is not None else tok.decode(sub)).float()
            if out is None:
                out = y.new_zeros(*y.shape[:3], h * f, w * f)
            out[..., ya * f : ye * f, xa * f : xe * f] += y * (vy[:, None] * vx[None, :])
    assert out is not None
    return tok._trim(out.clamp(-1, 1), num_frames)


def _seam_mask(spans: list[tuple[int, int]], total: int, unit: int) -> Tensor:
    """(total * unit,) bool: positions covered by two or more spans (the blend zones)."""
    count = torch.zeros(total * unit, dtype=torch.int32)
    for a, b in spans:
        count[a * unit : b * unit] += 1
    return count > 1


@torch.no_grad()
def tiling_report(
    tok: "VideoTokenizer", video: Tensor, tile: int | tuple[int, int] | None = None,
    overlap: int | tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Tiled vs whole-frame on one batch: the codes ``encode_tiled`` changes, and the error of
    ``decode_tiled`` (on the whole-frame codes) in the blend zones ("boundary": pixels two tiles
    cover) vs the rest ("interior").

    Keys: ``tiles`` ([rows, cols]), ``differing_codes`` / ``differing_fraction``,
    ``decode_max_err``, ``decode_max_err_boundary`` / ``decode_max_err_interior``,
    ``decode_mean_err_boundary`` / ``decode_mean_err_interior`` and ``boundary_to_interior``
    (ratio of the mean errors; about 1 means no seam).
    """
    tok.check_input(video)
    whole = tok.encode(video)
    tiled = encode_tiled(tok, video, tile, overlap)
    diff = whole != tiled
    y_whole = tok.decode(whole).float()
    y_tiled = decode_tiled(tok, whole, tile, overlap)
    err = (y_tiled - y_whole).abs().mean(dim=(0, 1, 2)).cpu()  # (H, W)
    err_max = (y_tiled - y_whole).abs().amax(dim=(0, 1, 2)).cpu()
    (th, tw), (oh, ow) = _tiling(tok, tile, overlap)
    h, w, f = whole.shape[2], whole.shape[3], tok.spatial_factor
    ys, _ = plan_spans(h, th, oh)
    xs, _ = plan_spans(w, tw, ow)
    seam = _seam_mask(ys, h, f)[:, None] | _seam_mask(xs, w, f)[None, :]

    def pick(t: Tensor, m: Tensor, red: str) -> float:
        return float(getattr(t[m], red)()) if bool(m.any()) else 0.0

    mb, mi = pick(err, seam, "mean"), pick(err, ~seam, "mean")
    return {
        "tiles": [len(ys), len(xs)],
        "differing_codes": int(diff.sum()),
        "differing_fraction": float(diff.float().mean()),
        "decode_max_err": float(err_max.max()),
        "decode_max_err_boundary": pick(err_max, seam, "max"),
        "decode_max_err_interior": pick(err_max, ~seam, "max"),
        "decode_mean_err_boundary": mb,
        "decode_mean_err_interior": mi,
        "boundary_to_interior": mb / mi if mi > 0 else (float("inf") if mb > 0 else 1.0),
    }


@torch.no_grad()
def window_report(
    tok: "VideoTokenizer", video: Tensor, window: int | None = None, decode_window: int | None = None
) -> dict[str, Any]:
    """Windowed vs whole-clip on one batch: ``differing_codes`` / ``differing_fraction`` of
    ``encode_long``, ``decode_max_err`` of ``decode_long`` (on the whole-clip codes) and
    ``encode_max_latent_err`` (pre-quantization latents, causal models only)."""
    tok.check_input(video)
    whole = tok.encode(video)
    windowed = encode_long(tok, video, window)
    diff = whole != windowed
    y_long = decode_long(tok, whole, decode_window)
    out = {
        "frames": int(video.shape[2]),
        "latent_frames": int(whole.shape[1]),
        "differing_codes": int(diff.sum()),
        "differing_fraction": float(diff.float().mean()),
        "decode_max_err": float((y_long - tok.decode(whole)).abs().max()),
    }
    if tok.causal:
        step = _window(tok, window, "window", latent=False)
        state: dict[Any, Tensor] = {}
        with streaming(tok.encoder, state):
            parts = [tok.encoder(video[:, :, : 1 + step])]
            parts += [tok.encoder(video[:, :, s : s + step]) for s in range(1 + step, video.shape[2], step)]
        out["encode_max_latent_err"] = float((torch.cat(parts, dim=2) - tok.encoder(video)).abs().max())
    return out


__all__ = [
    "StreamEncoder",
    "StreamDecoder",
    "encode_long",
    "decode_long",
    "encode_tiled",
    "decode_tiled",
    "tiling_report",
    "window_report",
    "plan_spans",
    "blend_weights",
]
