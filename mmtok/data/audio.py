"""Audio datasets: folders of sound files, generated speech, and the WAV helpers.

Every item is ``x``: float32 ``(channels, segment_length)`` in [-1, 1] at the model's
``sample_rate``, with ``meta``::

    {"offset": start sample of the segment in the (resampled) file,
     "sample_rate": the model's rate, "length": valid samples (< segment_length when the
     end is zero-padded), "source_sample_rate": the file's rate, "source_channels": the
     file's channels, "clipped": samples clipped to [-1, 1]}

The policy is explicit, never a silent guess:

- channels: a file with more channels than a mono model is averaged to mono; a mono file
  is duplicated for a multi-channel model; any other mismatch is an error item.
- rate: a file at another rate is resampled with ``torchaudio.functional.resample``
  (``resample=True``), otherwise it is an error item naming both rates.
- length: a segment that runs past the end of the file (a file shorter than
  ``segment_length``, the last chunk) is zero-padded at the end; ``meta["length"]`` says
  how much of it is real. A file with no samples is an error item.
- range: samples outside [-1, 1] (float files, resampling overshoot) are clipped and
  counted in ``meta["clipped"]``.
- silence: an item is skipped as ``silent`` when its segment and its whole file both have
  an RMS below ``min_rms`` (a quiet segment of a file that has sound is kept: speech has
  pauses; the whole-file RMS is computed only for quiet segments, streamed, once per file).
- unreadable (corrupt, not audio): an error item with the reader's message.

Segments: ``"random"`` (a segment drawn from ``item_rng(seed, epoch, index)``, for
training), ``"start"`` (the first segment, deterministic, for evaluation) and ``"chunks"``
(the items are all consecutive segments of every file, keyed ``"<file>@<offset>"``: how
long files are encoded into items). Only the frames a segment needs are read (plus a small
margin when resampling), so long files cost bounded memory.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from mmtok.audio.common import resample as resample_audio
from mmtok.audio.common import to_channels
from mmtok.data.base import error_item, make_item
from mmtok.data.transforms import item_rng
from mmtok.io import atomic_write, atomic_write_json

SEGMENTS = ("random", "start", "chunks")
_LOWPASS_WIDTH, _ROLLOFF = 6, 0.99  # torchaudio.functional.resample defaults
_MAX_RESAMPLE_KERNEL = 20_000_000  # reduced-rate product above which resampling is refused (kernel memory)


@lru_cache(maxsize=1)
def audio_extensions() -> tuple[str, ...]:
    """File suffixes read from folders: wav / flac / ogg / opus, and mp3 when libsndfile reads it."""
    import soundfile as sf

    formats = sf.available_formats()
    exts = [".wav", ".wave", ".flac"]
    if "OGG" in formats:
        exts += [".ogg", ".oga", ".opus"]
    if "MP3" in formats:
        exts.append(".mp3")
    return tuple(exts)


# --- helpers ---------------------------------------------------------------------------------
def _clip(x: Tensor) -> tuple[Tensor, int]:
    n = int((x.abs() > 1.0).sum())
    return (x.clamp(-1.0, 1.0) if n else x), n


class _Rates:
    """Exact block arithmetic between a file's rate and the model's (torchaudio's polyphase resampler).

    ``torchaudio.functional.resample`` maps each block of ``p_src`` input samples to ``p_dst``
    output samples with a filter reaching ``width`` samples to each side; reading a source
    range that starts on a block boundary ``margin`` samples early gives exactly the samples
    of resampling the whole file.
    """

    def __init__(self, src: int, dst: int) -> None:
        g = math.gcd(src, dst)
        self.src, self.dst, self.p_src, self.p_dst = src, dst, src // g, dst // g
        if self.p_src * self.p_dst > _MAX_RESAMPLE_KERNEL:
            raise ValueError(f"cannot resample {src} Hz to {dst} Hz (reduced ratio {self.p_src}:{self.p_dst} is too large)")
        self.width = math.ceil(_LOWPASS_WIDTH * self.p_src / (min(self.p_src, self.p_dst) * _ROLLOFF))

    def length(self, frames: int) -> int:
        """Resampled length of ``frames`` source samples."""
        return -(-frames * self.p_dst // self.p_src)

    def source_range(self, start: int, stop: int, frames: int) -> tuple[int, int, int]:
        """(src_start, src_stop, dst offset of src_start) covering output samples [start, stop)."""
        margin = -(-self.width // self.p_src)  # blocks
        b0 = max(0, start // self.p_dst - margin)
        b1 = (stop - 1) // self.p_dst + 1
        return b0 * self.p_src, min(frames, b1 * self.p_src + self.width), b0 * self.p_dst


def read_range(f: Any, start: int, stop: int, sample_rate: int, resample: bool = True) -> Tensor:
    """Samples [start, stop) in ``sample_rate`` coordinates of an open ``soundfile.SoundFile``.

    Returns (C_file, stop - start) float32 (the file's channels; past the end is not padded
    here: the result is shorter). Raises ``ValueError`` when the rate differs and ``resample`` is off.
    """
    src, frames = int(f.samplerate), int(f.frames)
    if src == sample_rate:
        s0, s1, base = start, min(stop, frames), start
    else:
        if not resample:
            raise ValueError(f"file is {src} Hz, model expects {sample_rate} Hz; set resample: true")
        rates = _Rates(src, sample_rate)
        s0, s1, base = rates.source_range(start, stop, frames)
    f.seek(s0)
    data = f.read(frames=max(0, s1 - s0), dtype="float32", always_2d=True)  # (n, C)
    x = torch.from_numpy(np.ascontiguousarray(data.T))
    if src != sample_rate:
        x = resample_audio(x, src, sample_rate, clamp=False)
    return x[:, start - base: stop - base]


def _resampled_length(frames: int, src: int, dst: int) -> int:
    return frames if src == dst else _Rates(src, dst).length(frames)


def save_wav(path: str | os.PathLike, x: Tensor | np.ndarray, sample_rate: int) -> Path:
    """Write ``x`` (C, S) float in [-1, 1] as a 16-bit PCM WAV, atomically (values are clamped
    to [-1, 1], as every 16-bit writer does)."""
    import soundfile as sf

    arr = x.detach().float().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"save_wav expects (channels, samples), got shape {arr.shape}")
    data = np.clip(arr, -1.0, 1.0).T
    return atomic_write(path, lambda p: sf.write(p, data, int(sample_rate), subtype="PCM_16", format="WAV"))


def load_audio(path: str | os.PathLike, sample_rate: int | None = None, channels: int | None = None,
               resample: bool = True) -> tuple[Tensor, int]:
    """A whole file -> ((C, S) float32, rate), optionally resampled to ``sample_rate`` and converted
    to ``channels`` (the datasets' policy; values outside [-1, 1] are kept). Raises on unreadable files."""
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        rate = int(f.samplerate)
        if sample_rate is None:
            data = f.read(dtype="float32", always_2d=True)
            x = torch.from_numpy(np.ascontiguousarray(data.T))
        else:
            x = read_range(f, 0, _resampled_length(int(f.frames), rate, int(sample_rate)), int(sample_rate), resample)
            rate = int(sample_rate)
    if channels is not None:
        x = to_channels(x, int(channels))
    return x, rate


def _file_rms(path: Path) -> float:
    """RMS over all samples and channels of a file, streamed in blocks."""
    import soundfile as sf

    total, count = 0.0, 0
    for block in sf.blocks(str(path), blocksize=1 << 16, dtype="float32", always_2d=True):
        total += float(np.square(block, dtype=np.float64).sum())
        count += block.size
    return math.sqrt(total / count) if count else 0.0


# --- datasets --------------------------------------------------------------------------------
class AudioDataset(Dataset):
    """Base of the audio datasets: the preprocessing every item is delivered in.

    Random segments are drawn from ``item_rng(seed, epoch, index)``; call ``set_epoch(e)``
    before each epoch (``make_loader`` does it).
    """

    def __init__(self, sample_rate: int, channels: int = 1, segment_length: int | None = None,
                 segment: str = "random", resample: bool = True, min_rms: float = 1e-4, seed: int = 0) -> None:
        for name, v in (("sample_rate", sample_rate), ("channels", channels)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if segment_length is None:
            raise ValueError("audio datasets need segment_length (samples per item): the tokenizer's preprocessing() "
                             "gives it, or pass segment_length=")
        if not isinstance(segment_length, int) or isinstance(segment_length, bool) or segment_length <= 0:
            raise ValueError(f"segment_length must be a positive int, got {segment_length!r}")
        if segment not in SEGMENTS:
            raise ValueError(f"segment must be one of {SEGMENTS}, got {segment!r}")
        if min_rms < 0:
            raise ValueError(f"min_rms must be >= 0, got {min_rms}")
        self.sample_rate, self.channels, self.segment_length = sample_rate, channels, segment_length
        self.segment, self.resample, self.min_rms, self.seed = segment, bool(resample), float(min_rms), int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def segment_seconds(self) -> float:
        return self.segment_length / self.sample_rate

    def describe(self) -> dict[str, Any]:
        """The preprocessing of the items (recorded by evaluations and encodes)."""
        return {"sample_rate": self.sample_rate, "channels": self.channels, "segment_length": self.segment_length,
                "segment": self.segment, "resample": self.resample, "min_rms": self.min_rms}

    error_item = staticmethod(error_item)


class AudioFolder(AudioDataset):
    """All sound files under ``root`` (recursive, sorted by relative path: deterministic order).

    Suffixes: ``audio_extensions()``. ``label`` is the index of the first-level sub-folder
    (sorted), 0 for files directly in ``root``; ``key`` is the relative path without
    extension (``"<rel>@<offset>"`` in ``"chunks"`` mode). See the module docstring for the
    channel, rate, length, range and silence policy. ``max_items`` keeps the first N items.
    """

    def __init__(self, root: str | Path, sample_rate: int, channels: int = 1, segment_length: int | None = None,
                 segment: str = "random", resample: bool = True, min_rms: float = 1e-4, seed: int = 0,
                 max_items: int | None = None) -> None:
        super().__init__(sample_rate, channels, segment_length, segment, resample, min_rms, seed)
        self.root = Path(root).expanduser()
        if not self.root.exists():
            raise FileNotFoundError(f"audio folder not found: {self.root}")
        if not self.root.is_dir():
            raise NotADirectoryError(f"not a directory: {self.root}")
        if max_items is not None and max_items <= 0:
            raise ValueError(f"max_items must be positive, got {max_items}")
        exts = audio_extensions()
        files = sorted((p for p in self.root.rglob("*") if p.suffix.lower() in exts and p.is_file()),
                       key=lambda p: p.relative_to(self.root).as_posix())
        if not files:
            raise ValueError(f"no audio files ({', '.join(exts)}) found under {self.root}")
        self.max_items = max_items
        classes = sorted({p.relative_to(self.root).parts[0] for p in files if len(p.relative_to(self.root).parts) > 1})
        self.class_to_idx = {c: i for i, c in enumerate(classes)}
        self._rms: dict[int, float] = {}
        if segment == "chunks":
            self.files, self._chunks = self._chunk_index(files, max_items)
        else:
            self.files, self._chunks = files[:max_items] if max_items else files, None

    def _chunk_index(self, files: list[Path], max_items: int | None) -> tuple[list[Path], np.ndarray]:
        """(file index, offset) of every segment; a file whose length is unknown (unreadable,
        wrong rate without resampling, empty) gets one entry that reads as its error item."""
        import soundfile as sf

        rows: list[tuple[int, int]] = []
        used: list[Path] = []
        for p in files:
            if max_items is not None and len(rows) >= max_items:
                break
            try:
                info = sf.info(str(p))
                ok = int(info.frames) > 0 and (self.resample or int(info.samplerate) == self.sample_rate)
                n = _resampled_length(int(info.frames), int(info.samplerate), self.sample_rate) if ok else 0
            except Exception:  # reported by __getitem__ as an error item
                n = 0
            fi = len(used)
            used.append(p)
            rows.extend((fi, o) for o in (range(0, n, self.segment_length) if n > 0 else [0]))
        rows = rows[:max_items] if max_items is not None else rows
        return used, np.asarray(rows, dtype=np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self._chunks) if self._chunks is not None else len(self.files)

    def _key(self, rel: Path) -> str:
        return rel.with_suffix("").as_posix()

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        if self._chunks is not None:
            fi, offset = (int(v) for v in self._chunks[index])
        else:
            fi, offset = index, None
        path = self.files[fi]
        rel = path.relative_to(self.root)
        key = self._key(rel) if offset is None else f"{self._key(rel)}@{offset}"
        label = self.class_to_idx.get(rel.parts[0], 0) if len(rel.parts) > 1 else 0
        try:
            return self._read(path, fi, index, key, label, offset)
        except Exception as e:  # corrupt / unreadable / wrong rate: reported, never fatal
            return self.error_item(key, str(path), e)

    def _read(self, path: Path, fi: int, index: int, key: str, label: int, offset: int | None) -> dict[str, Any]:
        import soundfile as sf

        S = self.segment_length
        with sf.SoundFile(str(path)) as f:
            src_rate, src_channels, frames = int(f.samplerate), int(f.channels), int(f.frames)
            if frames <= 0:
                return self.error_item(key, str(path), "empty audio file (0 samples)")
            if src_rate != self.sample_rate and not self.resample:
                return self.error_item(key, str(path), f"file is {src_rate} Hz, model expects {self.sample_rate} Hz; "
                                                       "set resample: true")
            total = _resampled_length(frames, src_rate, self.sample_rate)
            if offset is None:
                if self.segment == "random" and total > S:
                    offset = int(item_rng(self.seed, self.epoch, index).integers(0, total - S + 1))
                else:
                    offset = 0
            x = read_range(f, offset, min(offset + S, total), self.sample_rate, self.resample)
        x = to_channels(x, self.channels)
        x, clipped = _clip(x)
        length = int(x.shape[1])
        if length == 0:
            return self.error_item(key, str(path), f"offset {offset} is past the end of the file ({total} samples)")
        if self.min_rms > 0 and float(x.double().pow(2).mean().sqrt()) < self.min_rms:
            if fi not in self._rms:
                self._rms[fi] = _file_rms(path)
            if self._rms[fi] < self.min_rms:
                return self.error_item(key, str(path), f"silent (RMS {self._rms[fi]:.2e} < min_rms {self.min_rms:g})")
        if length < S:
            x = torch.nn.functional.pad(x, (0, S - length))
        meta = {"offset": int(offset), "sample_rate": self.sample_rate, "length": length,
                "source_sample_rate": src_rate, "source_channels": src_channels, "clipped": clipped}
        return make_item(x.contiguous(), key, str(path), label, meta)

    def __repr__(self) -> str:
        return (f"AudioFolder({str(self.root)!r}, {len(self)} items, {self.sample_rate} Hz, channels={self.channels}, "
                f"segment_length={self.segment_length}, segment={self.segment!r})")


# --- generated speech ------------------------------------------------------------------------
SPEECH_VERSION = 1
_VOICES = ("en-us", "en-gb", "en-us+f2", "en-gb+f4", "en-us+m3", "en-gb-scotland", "en-029+f1", "en-gb-x-rp+m5")
_SUBJECTS = ("the old captain", "a young doctor", "my neighbour", "the small robot", "our teacher", "a tired pilot",
             "the baker", "his sister", "the new student", "a quiet farmer", "the musician", "every engineer")
_VERBS = ("painted", "carried", "found", "described", "repaired", "opened", "counted", "borrowed", "followed",
          "remembered", "measured", "delivered")
_OBJECTS = ("a wooden boat", "the broken window", "seven green apples", "an ancient map", "the silver key",
            "a box of letters", "the heavy suitcase", "twelve paper lanterns", "a bright red kite", "the last train ticket")
_TAILS = ("before the storm arrived", "near the river", "on a cold Monday morning", "without saying a word",
          "while the children were sleeping", "at the end of the street", "in less than an hour", "for the first time",
          "under the bridge", "after a long journey")
_QUESTIONS = ("Did you hear that?", "Why is it so loud?", "Where are we going next?", "Can you see the lights?",
              "What time is it now?", "Is anyone there?")


def speech_text(rng: np.random.Generator) -> str:
    """One varied English sentence (statement, optionally followed by a question or a number)."""
    pick = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
    s = f"{pick(_SUBJECTS).capitalize()} {pick(_VERBS)} {pick(_OBJECTS)} {pick(_TAILS)}."
    r = rng.random()
    if r < 0.35:
        s += " " + pick(_QUESTIONS)
    elif r < 0.6:
        s += f" It cost {int(rng.integers(2, 999))} dollars and {int(rng.integers(1, 99))} cents."
    return s


def default_cache_root() -> Path:
    """``$MMTOK_CACHE_DIR`` or ``$XDG_CACHE_HOME/mmtok`` (``~/.cache/mmtok``)."""
    root = os.environ.get("MMTOK_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "mmtok")
    return Path(root).expanduser()


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise FileNotFoundError("the 'speech' dataset needs the espeak-ng program, which is not on PATH; install it "
                                "(Debian/Ubuntu: apt-get install espeak-ng) or use 'synthetic[:N]' or an audio folder")
    return exe


def speech_corpus(num_items: int, cache_dir: str | os.PathLike | None = None) -> Path:
    """Folder of ``num_items`` espeak-ng sentences (22.05 kHz mono WAV), generated once and cached.

    Layout ``<cache>/speech/<hash>/<voice>/<index>.wav`` (the voice sub-folder is the label),
    plus ``manifest.json`` (text, voice, speed, pitch of each file) written last. Each file
    is written atomically, so an interrupted generation resumes where it stopped. The hash
    covers ``num_items``, the corpus version and the espeak-ng version.
    """
    if num_items <= 0:
        raise ValueError(f"speech dataset size must be positive, got {num_items}")
    exe = _espeak()
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    digest = hashlib.sha256(json.dumps([SPEECH_VERSION, num_items, version]).encode()).hexdigest()[:16]
    root = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()) / "speech" / digest
    manifest = root / "manifest.json"
    if manifest.is_file():
        return root
    entries = []
    for i in range(num_items):
        rng = np.random.default_rng([SPEECH_VERSION, i])
        voice = _VOICES[int(rng.integers(len(_VOICES)))]
        speed, pitch = int(rng.integers(125, 196)), int(rng.integers(25, 76))
        text = speech_text(rng)
        rel = f"{re.sub(r'[^A-Za-z0-9-]+', '_', voice)}/{i:06d}.wav"
        entries.append({"file": rel, "text": text, "voice": voice, "speed": speed, "pitch": pitch})
        if (root / rel).is_file():
            continue

        def write(tmp: Path, voice: str = voice, speed: int = speed, pitch: int = pitch, text: str = text) -> None:
            cmd = [exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(tmp), text]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0 or tmp.stat().st_size <= 44:
                raise RuntimeError(f"espeak-ng failed ({' '.join(cmd[:-1])}): {done.stderr.strip() or 'no audio written'}")

        atomic_write(root / rel, write)
    atomic_write_json(manifest, {"version": SPEECH_VERSION, "espeak": version, "num_items": num_items, "items": entries})
    return root


def open_audio_dataset(spec: str | Path, *, sample_rate: int, segment_length: int | None = None, channels: int = 1,
                       segment: str = "random", resample: bool = True, min_rms: float = 1e-4, seed: int = 0,
                       max_items: int | None = None, cache_dir: str | os.PathLike | None = None) -> AudioDataset:
    """Audio dataset from a spec string.

    ``"synthetic"`` / ``"synthetic:N"`` -> ``SyntheticAudio`` (N items, default 1024);
    ``"speech"`` / ``"speech:N"`` -> N generated espeak-ng sentences (default 256, cached,
    see :func:`speech_corpus`) read as an ``AudioFolder``; a directory -> ``AudioFolder``.
    ``sample_rate`` / ``channels`` / ``segment_length`` come from ``tok.preprocessing()``
    (synthetic clips are whole items: ``segment`` / ``resample`` / ``min_rms`` do not apply).
    A missing path raises ``FileNotFoundError``; a folder without audio raises ``ValueError``.
    """
    from mmtok.data.synthetic_audio import SyntheticAudio

    s = str(spec).strip()
    if not s:
        raise ValueError("empty dataset spec; use 'synthetic[:N]', 'speech[:N]' or an audio folder")
    if segment not in SEGMENTS:
        raise ValueError(f"segment must be one of {SEGMENTS}, got {segment!r}")
    name, _, n = s.partition(":")
    if name in ("synthetic", "speech") and not Path(s).is_dir():
        try:
            num = int(n) if n else (1024 if name == "synthetic" else 256)
        except ValueError:
            raise ValueError(f"bad {name} dataset spec {s!r}; use '{name}' or '{name}:N'") from None
        if name == "synthetic":
            num = min(num, max_items) if max_items else num
            return SyntheticAudio(num_items=num, sample_rate=sample_rate, channels=channels,
                                  segment_length=segment_length, seed=seed)
        root = speech_corpus(num, cache_dir)
        return AudioFolder(root, sample_rate, channels, segment_length, segment, resample, min_rms, seed, max_items)
    p = Path(s).expanduser()
    if p.is_dir():
        return AudioFolder(p, sample_rate, channels, segment_length, segment, resample, min_rms, seed, max_items)
    if not p.exists():
        raise FileNotFoundError(f"dataset path not found: {p} (expected 'synthetic[:N]', 'speech[:N]' or an audio folder)")
    raise ValueError(f"unsupported audio dataset source {p}: expected an audio folder, 'synthetic[:N]' or 'speech[:N]'")


class AudioViews:
    """The views contract of ``mmtok.data.views_for`` for audio: one copy per item (``"orig"``).

    Takes the tokenizer's preprocessing (``sample_rate``, ``channels``, ``segment_length``)
    and hands it back as ``load_preprocessing`` for the dataset opener, with
    ``segment="chunks"``: an encode covers every file completely, in consecutive items keyed
    ``<file>@<offset>`` (a dataset option ``segment`` given to the encode overrides it). Audio
    has no augmentation copies: any other option (``flip``, ``crops``, ...) raises ``ValueError``.
    """

    def __init__(self, sample_rate: int | None = None, channels: int | None = None, segment_length: int | None = None,
                 **options: Any) -> None:
        if options:
            raise ValueError(f"audio has no augmentation views; unsupported view option(s) {sorted(options)} "
                             "(audio views take only the preprocessing: sample_rate, channels, segment_length)")
        given = {"sample_rate": sample_rate, "channels": channels, "segment_length": segment_length}
        self._prep = {k: v for k, v in given.items() if v is not None}

    @property
    def names(self) -> list[str]:
        return ["orig"]

    @property
    def load_preprocessing(self) -> dict[str, Any]:
        return {**self._prep, "segment": "chunks"}

    def describe(self) -> dict[str, Any]:
        return {"augmentations": list(self.names)}

    def views(self, x: Tensor) -> list[Tensor]:
        """(B, C, S) -> [(B, C, S)]."""
        return [x]
