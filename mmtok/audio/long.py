"""Long files in bounded memory: windowed encode / decode with stitching, and a seam report.

    codes = tok.encode_long(wav, chunk_seconds=10)    # wav (C, S) -> (T[, Q])
    wav_hat = tok.decode_long(codes)                                  # -> (C, T * hop)

Windows of ``chunk`` frames start every ``chunk - overlap`` frames; the last one is moved
back to end at the file's end (no padding past it), so the file's own edges see exactly
what a whole-file pass sees. Only ``batch_size`` windows are in memory at a time; by default
one on the CPU (batching windows there only adds memory traffic: batch 1 is faster and keeps
the peak flat) and ``GPU_BATCH_SIZE`` on an accelerator, where a batch fills the device.

Stitching. Between consecutive windows a *cut* frame decides which window a frame comes
from. Non-causal models cut in the middle of the overlap: every kept frame has at least
``overlap / 2`` frames of real context on each side. Causal models cut at the end of the
earlier window (a causal layer never needs the right side): every frame of the later
window keeps ``overlap`` frames of left context. Codes equal the whole-file encode
whenever that context covers the encoder's reach (default ``overlap``: computed so).
``decode_long`` crossfades windows with complementary raised-cosine ramps of ``fade``
frames, centred on the cut (non-causal) or ending at it (causal).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from mmtok.layers.audio import reach

if TYPE_CHECKING:
    from mmtok.audio.common import AudioTokenizer


GPU_BATCH_SIZE = 8


def default_batch_size(device: torch.device | str) -> int:
    """Windows per batch for ``encode_long`` / ``decode_long`` on ``device``: 1 on the CPU,
    ``GPU_BATCH_SIZE`` elsewhere."""
    return 1 if torch.device(device).type == "cpu" else GPU_BATCH_SIZE


def _batch_size(batch_size: int | None, device: torch.device) -> int:
    if batch_size is None:
        return default_batch_size(device)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return int(batch_size)


def plan_windows(total: int, window: int, overlap: int, causal: bool) -> tuple[list[tuple[int, int]], list[int]]:
    """Windows ``[(start, end)]`` of ``window`` frames over ``total`` frames and the cut
    frame between each consecutive pair (see the module docstring)."""
    if window < 1 or overlap < 0 or 2 * overlap > window:
        raise ValueError(
            f"need window >= 1 and 0 <= overlap <= window / 2, got window={window}, overlap={overlap} frames"
        )
    if total <= window:
        return [(0, total)], []
    step = window - overlap
    starts, s = [], 0
    while s + window < total:
        starts.append(s)
        s += step
    starts.append(total - window)
    wins = [(a, a + window) for a in starts]
    cuts = [b if causal else (a + b) // 2 for (_, b), (a, _) in zip(wins, wins[1:])]
    return wins, cuts


def _frames(seconds: float, frame_rate: float, name: str) -> int:
    """Seconds -> whole frames (rounded up); ``chunk_seconds`` must be > 0, an overlap >= 0."""
    if not (seconds > 0 or (seconds == 0 and name == "overlap_seconds")):
        raise ValueError(f"{name} must be {'>= 0' if name == 'overlap_seconds' else '> 0'}, got {seconds}")
    return int(math.ceil(seconds * frame_rate - 1e-9))


def default_overlap(tok: "AudioTokenizer", module: str = "encoder") -> int:
    """Overlap frames that make windowed == whole-file for ``"encoder"`` (``encode_long``) or
    ``"decoder"`` (``decode_long`` with its default fade of half the overlap)."""
    r = reach(getattr(tok, module))
    unit = tok.hop_length if module == "encoder" else 1  # encoder reach: samples; decoder: frames
    left, right = math.ceil(r.left / unit), math.ceil(r.right / unit)
    factor = 1 if module == "encoder" else 2  # the crossfade takes half the overlap
    return factor * (left if tok.causal else 2 * max(left, right))


def _overlap(tok: "AudioTokenizer", chunk: int, overlap_seconds: float | None) -> int:
    """Encode overlap in frames: given, or the encoder default clipped to half a window."""
    if overlap_seconds is None:
        return min(default_overlap(tok), chunk // 2)
    return _frames(overlap_seconds, tok.frame_rate, "overlap_seconds")


def _as_file(wav: Tensor, channels: int) -> Tensor:
    if isinstance(wav, Tensor) and wav.ndim == 2:
        return wav[None]
    if isinstance(wav, Tensor) and wav.ndim == 3 and wav.shape[0] == 1:
        return wav
    shape = tuple(wav.shape) if isinstance(wav, Tensor) else type(wav).__name__
    raise ValueError(f"a long file is (C, S) or (1, C, S) with C = {channels}, got {shape}")


@torch.no_grad()
def encode_long(
    tok: "AudioTokenizer",
    wav: Tensor,
    chunk_seconds: float = 10.0,
    overlap_seconds: float | None = None,
    batch_size: int | None = None,
    n_q: int | None = None,
    sample_rate: int | None = None,
    resample: bool = False,
) -> Tensor:
    """Encode a long (C, S) or (1, C, S) waveform window by window -> codes (T[, n_q]),
    T = ceil(S / hop). ``overlap_seconds`` defaults to what the encoder's reach needs for
    windowed == whole-file codes (clipped to half a window). ``batch_size``: windows per
    batch, default by device (``default_batch_size``)."""
    x = tok._prepare(_as_file(wav, tok.channels), sample_rate, resample)  # (1, C, T * hop)
    batch_size = _batch_size(batch_size, x.device)
    hop, total = tok.hop_length, x.shape[-1] // tok.hop_length
    chunk = max(1, _frames(chunk_seconds, tok.frame_rate, "chunk_seconds"))
    overlap = _overlap(tok, chunk, overlap_seconds)
    wins, cuts = plan_windows(total, chunk, overlap, tok.causal)
    bounds = [0, *cuts, total]
    pieces: list[Tensor] = []
    for i in range(0, len(wins), batch_size):
        group = wins[i : i + batch_size]
        segs = torch.cat([x[..., a * hop : b * hop] for a, b in group])  # (n, C, chunk * hop)
        codes = tok.quantize_latent(tok.encoder(segs), n_q)  # (n, chunk[, Q])
        for j, (a, _) in enumerate(group):
            k0, k1 = bounds[i + j], bounds[i + j + 1]
            pieces.append(codes[j, k0 - a : k1 - a])
    return torch.cat(pieces)


def _ramp(n: int, device: torch.device) -> Tensor:
    """Raised-cosine rise over ``n`` samples (0 -> 1); ``1 - ramp`` is its complement."""
    t = (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n
    return 0.5 - 0.5 * torch.cos(math.pi * t)


@torch.no_grad()
def decode_long(
    tok: "AudioTokenizer",
    codes: Tensor,
    chunk_frames: int | None = None,
    overlap_frames: int | None = None,
    fade_frames: int | None = None,
    batch_size: int | None = None,
) -> Tensor:
    """Decode long codes (T[, Q]) or (1, T[, Q]) window by window -> (C, T * hop) in [-1, 1].

    Windows of ``chunk_frames`` (default 10 s) overlap by ``overlap_frames`` (default: what
    the decoder's reach needs for windowed == whole decode) and are crossfaded over
    ``fade_frames`` (default ``overlap_frames // 2``) with complementary raised-cosine
    ramps (no seam; the weights are normalised, so any fade up to the overlap is valid).
    Only ``batch_size`` windows are decoded at a time (default by device, ``default_batch_size``).
    """
    single = 2 if tok.is_residual else 1
    if isinstance(codes, Tensor) and codes.ndim == single + 1 and codes.shape[0] == 1:
        codes = codes[0]
    codes = tok.check_codes(codes[None] if isinstance(codes, Tensor) else codes)[0]  # (T[, Q])
    hop, total = tok.hop_length, codes.shape[0]
    batch_size = _batch_size(batch_size, codes.device)
    chunk = chunk_frames if chunk_frames is not None else max(1, _frames(10.0, tok.frame_rate, "chunk_seconds"))
    overlap = min(default_overlap(tok, "decoder"), chunk // 2) if overlap_frames is None else overlap_frames
    fade = overlap // 2 if fade_frames is None else fade_frames
    if not 0 <= fade <= overlap:
        raise ValueError(f"fade_frames must be in [0, overlap_frames={overlap}], got {fade}")
    wins, cuts = plan_windows(total, chunk, overlap, tok.causal)
    # crossfade region of each cut, in samples: centred on it, or ending at it (causal)
    starts = [c - fade if tok.causal else c - fade // 2 for c in cuts]
    fades = [(s * hop, (s + fade) * hop) for s in starts]
    ramp = _ramp(fade * hop, codes.device) if fade else None
    out = torch.zeros(tok.channels, total * hop, device=codes.device)
    norm = torch.zeros(total * hop, device=codes.device)  # sum of weights (1 unless fades overlap)
    for i in range(0, len(wins), batch_size):
        group = wins[i : i + batch_size]
        batch = torch.stack([codes[a:b] for a, b in group])  # (n, chunk[, Q])
        wav = tok.decoder(tok.dequantize(batch)).float()  # (n, C, chunk * hop)
        for j, (a, b) in enumerate(group):
            w = i + j
            y = wav[j]
            weight = torch.ones(y.shape[-1], device=y.device)
            if w > 0:  # rise into this window at the previous cut
                f0, f1 = (s - a * hop for s in fades[w - 1])
                weight[:f0] = 0
                if ramp is not None:
                    weight[f0:f1] = ramp
            if w < len(wins) - 1:  # fall out of it at the next cut
                f0, f1 = (s - a * hop for s in fades[w])
                weight[f1:] = 0
                if ramp is not None:
                    weight[f0:f1] *= 1 - ramp
            out[:, a * hop : b * hop] += y * weight
            norm[a * hop : b * hop] += weight
    return (out / norm).clamp(-1, 1)


def _reach_frames(tok: "AudioTokenizer", module: str) -> int:
    """How many frames a change can travel through ``tok.encoder`` / ``tok.decoder`` (either side)."""
    r = reach(getattr(tok, module))
    unit = tok.hop_length if module == "encoder" else 1
    return math.ceil(max(r.left, r.right) / unit) + 1


def _near(total: int, cuts: list[int], edge: int) -> Tensor:
    """(total,) bool: frames closer than ``edge`` to a cut."""
    idx = torch.arange(total)
    near = torch.zeros(total, dtype=torch.bool)
    for c in cuts:
        near |= (idx - c).abs() < edge
    return near


@torch.no_grad()
def seam_report(
    tok: "AudioTokenizer",
    wav: Tensor,
    chunk_seconds: float = 10.0,
    overlap_seconds: float | None = None,
    decode_overlap_frames: int | None = None,
    batch_size: int | None = None,
    n_q: int | None = None,
    edge_frames: int | None = None,
) -> dict[str, Any]:
    """Windowed vs whole-file on one (C, S) file: the codes ``encode_long`` changes and where,
    and the error of ``decode_long`` (on the whole-file codes) near the cuts vs elsewhere.

    "Near a cut" = within ``edge_frames`` of it (default: how far a change can travel
    through the encoder, resp. the decoder). Keys: ``frames``, ``windows``, ``chunk_frames``,
    ``overlap_frames``, ``decode_overlap_frames``, ``differing_codes`` / ``differing_fraction``
    (over all code ids), ``differing_frames``, ``differing_frames_near_cuts`` /
    ``differing_frames_interior``, ``decode_max_err``, ``decode_max_err_boundary`` /
    ``decode_max_err_interior``, ``decode_rms_err``, ``cuts``.
    """
    x = _as_file(wav, tok.channels)
    whole = tok.encode(x, n_q=n_q)[0]  # (T[, Q])
    total, hop = whole.shape[0], tok.hop_length
    chunk = max(1, _frames(chunk_seconds, tok.frame_rate, "chunk_seconds"))
    overlap = _overlap(tok, chunk, overlap_seconds)
    dec_overlap = decode_overlap_frames
    if dec_overlap is None:
        dec_overlap = min(default_overlap(tok, "decoder"), chunk // 2)
    rate = tok.frame_rate
    windowed = encode_long(tok, x, chunk / rate, overlap / rate, batch_size=batch_size, n_q=n_q)
    _, cuts = plan_windows(total, chunk, overlap, tok.causal)
    near = _near(total, cuts, _reach_frames(tok, "encoder") if edge_frames is None else edge_frames)
    diff = (whole != windowed).cpu()
    frame_diff = diff.reshape(total, -1).any(-1)

    y_whole = tok.decode(whole[None])[0]
    y_long = decode_long(tok, whole, chunk_frames=chunk, overlap_frames=dec_overlap, batch_size=batch_size)
    err = (y_long - y_whole).abs().amax(0).cpu()  # (T * hop,)
    _, dec_cuts = plan_windows(total, chunk, dec_overlap, tok.causal)
    dec_edge = _reach_frames(tok, "decoder") if edge_frames is None else edge_frames
    near_s = _near(total, dec_cuts, dec_edge).repeat_interleave(hop)
    return {
        "frames": total,
        "windows": len(cuts) + 1,
        "chunk_frames": chunk,
        "overlap_frames": overlap,
        "decode_overlap_frames": dec_overlap,
        "differing_codes": int(diff.sum()),
        "differing_fraction": float(diff.float().mean()),
        "differing_frames": int(frame_diff.sum()),
        "differing_frames_near_cuts": int((frame_diff & near).sum()),
        "differing_frames_interior": int((frame_diff & ~near).sum()),
        "decode_max_err": float(err.max()),
        "decode_max_err_boundary": float(err[near_s].max()) if near_s.any() else 0.0,
        "decode_max_err_interior": float(err[~near_s].max()) if (~near_s).any() else 0.0,
        "decode_rms_err": float((y_long - y_whole).pow(2).mean().sqrt()),
        "cuts": cuts,
    }


__all__ = ["encode_long", "decode_long", "seam_report", "plan_windows", "default_overlap"]
