"""Token shard format: Parquet files with per-item rows and mmtok metadata in the footer.

One shard is one Parquet file ``shard-000123.parquet`` holding, per item:

    key      string         item identity in the source dataset (e.g. "synthetic/000012")
    aug      string         augmentation copy ("orig", "flip", "crop1", "crop1+flip", ...)
    codes    list<uint16>   token ids, row-major over the item's codes shape (int32 when a
                            codebook does not fit in uint16)
    shape    list<int32>    codes shape of this item: the token grid, then the residual level
                            when there are several (``(K,)``, ``(h, w)``, ``(T, Q)``, ...)
    label    int64 (null)   class label when the source has one
    caption  string (null)  caption when the source has one
    path     string         source file of the item
    length   int32 (null)   optional: valid samples of the item's input when it is a
                            fixed-length segment of a longer signal (audio chunks: the last
                            chunk of a file is zero-padded, decode trims to this length);
                            written only by encodes of segmented data, absent otherwise
    fps      float64 (null) optional: frame rate of the item's frames (video clips: the
                            timeline rate over the frame stride, i.e. the rate to play
                            the clip at; per row because files of a folder may differ);
                            written only by encodes of clips, absent otherwise

Items cut from a longer source are keyed ``<source>@<offset>``: audio ``segment="chunks"``
(``offset``: the segment's first sample at the model's rate) and video ``clip="chunks"``
(``offset``: the clip's first frame on the file's timeline). :func:`split_chunk_key`
recovers both, so the chunks of one file can be put back in order (audio: ``mmtok decode --join``).

Video shards: each row's ``shape`` is the latent grid ``(t, h, w)`` (codes in raster order,
t-major). The frame count and rate are recorded twice: per shard in ``preprocessing``
(``num_frames`` frames per clip, ``frame_stride``, ``fps``: the rate the timeline was
resampled to, None for each file's own rate, and ``clip``), and per row in ``fps`` (the
clip's own rate, what ``mmtok decode`` writes the MP4 at). ``modality_info`` holds the
tokenizer's ``temporal_factor``, ``spatial_factor``, ``compression`` and ``causal``.

The footer's key-value metadata ``mmtok`` holds a JSON document (:class:`ShardMetadata`
fields plus the shard's index, item count and skipped inputs). A folder of shards has a ``manifest.json``
listing every shard with its item count, and an ``errors.jsonl`` of skipped inputs.
Any Parquet reader (pandas, HF ``datasets``, Spark, Ray, DuckDB) reads the shards as is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmtok.io import atomic_write, atomic_write_json

FORMAT_NAME = "mmtok-token-shards"
FORMAT_VERSION = 1
META_KEY = b"mmtok"
MANIFEST_NAME = "manifest.json"
ERRORS_NAME = "errors.jsonl"
SHARD_RE = re.compile(r"^shard-(\d{6})\.parquet$")

# Metadata fields that must agree between shards of one dataset and with a trainer's
# expectation; the rest (paths, versions, precision) is informative.
IDENTITY_FIELDS = (
    "tokenizer",
    "family",
    "modality",
    "config_hash",
    "checkpoint_hash",
    "codebook_sizes",
    "token_shape",
    "codes_dtype",
    "preprocessing",
)


class ShardMismatchError(ValueError):
    """Shards whose metadata disagree with each other or with what the reader expects."""


@dataclass
class ShardMetadata:
    """What made the tokens: the tokenizer identity and the preprocessing of the inputs.

    tokenizer:       registered variant name (e.g. ``"titok_t32_fsq"``)
    family:          tokenizer class name
    modality:        "image", "video" or "audio"
    config_hash:     hash of the tokenizer config (``mmtok.config.config_hash``)
    checkpoint_hash: sha256 of the checkpoint weights file
    codebook_sizes:  one codebook size per residual level (``tok.codebook_sizes``)
    token_shape:     codes shape of one item (``tok.codes_shape``): the token grid, then
                     the residual level when there are several, e.g. ``[32]``,
                     ``[16, 16]``, ``[T, Q]`` (each row's own shape is in ``shape``)
    codes_dtype:     "uint16" or "int32"
    preprocessing:   what the data went through: the tokenizer's ``preprocessing()`` (image:
                     resolution; video: resolution, num_frames), dataset options (image: crop;
                     audio: segment; video: clip, and always the timeline's frame_stride and
                     fps), the augmentation copies (``augmentations`` in row order,
                     ``crop_scale``) and the seed
    modality_info:   the tokenizer's ``describe()`` (modality facts: bits per item,
                     nesting, resolution / sample rate, video compression factors, ...);
                     informative, not compared
    """

    tokenizer: str
    family: str
    modality: str
    config_hash: str
    checkpoint_hash: str
    codebook_sizes: list[int]
    token_shape: list[int]
    codes_dtype: str
    preprocessing: dict[str, Any] = field(default_factory=dict)
    modality_info: dict[str, Any] = field(default_factory=dict)
    mmtok_version: str = ""
    checkpoint_path: str = ""
    source: str = ""
    shard_size: int = 0
    precision: str = "fp32"
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    @property
    def vocab_size(self) -> int:
        """Number of distinct token ids (largest codebook)."""
        return int(max(self.codebook_sizes))

    @property
    def num_codebooks(self) -> int:
        """Residual levels per token position (``n_q``; the last axis of ``token_shape`` when > 1)."""
        return len(self.codebook_sizes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ShardMetadata":
        known = {f for f in cls.__dataclass_fields__}
        missing = [f for f in IDENTITY_FIELDS if f not in d]
        if missing:
            raise ShardMismatchError(f"shard metadata lacks {missing}; not an mmtok token shard")
        if d.get("format") != FORMAT_NAME:
            raise ShardMismatchError(f"shard metadata names format {d.get('format')!r}, expected {FORMAT_NAME!r}")
        if int(d.get("format_version", 0)) > FORMAT_VERSION:
            raise ShardMismatchError(
                f"shard format version {d.get('format_version')} is newer than this mmtok reads ({FORMAT_VERSION}); upgrade mmtok"
            )
        return cls(**{k: v for k, v in d.items() if k in known})

    def identity(self) -> dict[str, Any]:
        """The fields that must match for two shard sets to be mixed."""
        d = self.to_dict()
        return {k: d[k] for k in IDENTITY_FIELDS}


def codes_dtype_for(codebook_sizes: Sequence[int]) -> str:
    """"uint16" when every id fits in 16 bits, else "int32"."""
    return "uint16" if max(codebook_sizes) <= 65536 else "int32"


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.parquet"


def schema_for(codes_dtype: str, with_length: bool = False, with_fps: bool = False) -> pa.Schema:
    """The shard schema; ``with_length`` / ``with_fps`` add the optional ``length`` (segmented inputs) and
    ``fps`` (clips) columns."""
    code_type = {"uint16": pa.uint16(), "int32": pa.int32()}[codes_dtype]
    fields = [
        ("key", pa.string()),
        ("aug", pa.string()),
        ("codes", pa.list_(code_type)),
        ("shape", pa.list_(pa.int32())),
        ("label", pa.int64()),
        ("caption", pa.string()),
        ("path", pa.string()),
    ]
    fields += [("length", pa.int32())] if with_length else []
    fields += [("fps", pa.float64())] if with_fps else []
    return pa.schema(fields)


_CHUNK_KEY_RE = re.compile(r"^(.*)@(\d+)$")


def split_chunk_key(key: str) -> tuple[str, int | None]:
    """``"<source>@<offset>"`` -> (source, offset); a key without an offset -> (key, None)."""
    m = _CHUNK_KEY_RE.match(key)
    return (m.group(1), int(m.group(2))) if m else (key, None)


def _flat_codes(codes: Sequence[np.ndarray], dtype: str, codebook_sizes: Sequence[int]) -> tuple[pa.Array, pa.Array]:
    """Ragged list of code arrays -> (codes ListArray, shape ListArray), range-checked."""
    np_dtype = np.dtype(dtype)
    lengths = np.fromiter((c.size for c in codes), dtype=np.int64, count=len(codes))
    offsets = np.zeros(len(codes) + 1, dtype=np.int32 if lengths.sum() < 2**31 else np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate([np.asarray(c).reshape(-1) for c in codes]) if codes else np.zeros(0, np.int64)
    if flat.size:
        lo, hi = int(flat.min()), int(flat.max())
        if lo < 0 or hi >= max(codebook_sizes):
            raise ValueError(f"codes out of range [0, {max(codebook_sizes)}): found values in [{lo}, {hi}]")
    values = pa.array(flat.astype(np_dtype, copy=False))
    list_cls = pa.ListArray if offsets.dtype == np.int32 else pa.LargeListArray
    codes_arr = list_cls.from_arrays(pa.array(offsets), values)
    if list_cls is pa.LargeListArray:  # pragma: no cover - > 2^31 tokens in one shard
        codes_arr = codes_arr.cast(pa.list_(values.type))
    shapes = pa.array([list(np.shape(c)) for c in codes], type=pa.list_(pa.int32()))
    return codes_arr, shapes


def build_table(
    meta: ShardMetadata,
    keys: Sequence[str],
    codes: Sequence[np.ndarray],
    *,
    augs: Sequence[str] | None = None,
    labels: Sequence[int | None] | None = None,
    captions: Sequence[str | None] | None = None,
    paths: Sequence[str] | None = None,
    lengths: Sequence[int | None] | None = None,
    fps: Sequence[float | None] | None = None,
    extra_meta: Mapping[str, Any] | None = None,
) -> pa.Table:
    """Assemble one shard's Arrow table (rows in the given order) with metadata in the schema.

    ``lengths`` (valid input samples per row) adds the optional ``length`` column, ``fps``
    (frame rate of each row's clip) the optional ``fps`` column.
    """
    n = len(keys)
    for name, col in (("codes", codes), ("augs", augs), ("labels", labels), ("captions", captions), ("paths", paths),
                      ("lengths", lengths), ("fps", fps)):
        if col is not None and len(col) != n:
            raise ValueError(f"{name} has {len(col)} entries for {n} keys")
    codes_arr, shapes = _flat_codes(codes, meta.codes_dtype, meta.codebook_sizes)
    cols = [
        pa.array(list(keys), type=pa.string()),
        pa.array(list(augs) if augs is not None else ["orig"] * n, type=pa.string()),
        codes_arr,
        shapes,
        pa.array(list(labels) if labels is not None else [None] * n, type=pa.int64()),
        pa.array(list(captions) if captions is not None else [None] * n, type=pa.string()),
        pa.array(list(paths) if paths is not None else [""] * n, type=pa.string()),
    ]
    if lengths is not None:
        cols.append(pa.array([None if v is None else int(v) for v in lengths], type=pa.int32()))
    if fps is not None:
        cols.append(pa.array([None if v is None else float(v) for v in fps], type=pa.float64()))
    doc = meta.to_dict() | dict(extra_meta or {}) | {"num_items": n}
    schema = schema_for(meta.codes_dtype, with_length=lengths is not None, with_fps=fps is not None)
    schema = schema.with_metadata({META_KEY: json.dumps(doc, sort_keys=True).encode()})
    return pa.Table.from_arrays(cols, schema=schema)


def write_shard(path: str | Path, table: pa.Table, compression: str = "zstd") -> Path:
    """Write a shard atomically (temp file, fsync, rename): a killed run never leaves a torn shard."""
    return atomic_write(
        path,
        lambda p: pq.write_table(table, str(p), compression=compression, row_group_size=max(1, table.num_rows),
                                 write_statistics=False, store_schema=True),
    )


def read_shard_meta(path: str | Path) -> dict[str, Any]:
    """The footer metadata of one shard (reads only the footer)."""
    try:
        schema = pq.read_schema(str(path))
    except (OSError, pa.ArrowInvalid) as e:
        raise ShardMismatchError(f"{path} is not a readable Parquet shard: {e}") from e
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise ShardMismatchError(f"{path} has no mmtok metadata; it was not written by mmtok encode")
    return json.loads(raw)


def read_shard(path: str | Path, columns: Sequence[str] | None = None) -> pa.Table:
    """Read one shard (all or some columns), memory-mapped."""
    return pq.read_table(str(path), columns=list(columns) if columns else None, memory_map=True)


def list_shard_files(directory: str | Path) -> list[Path]:
    """Finished shard files of a folder, in index order (temporary files are ignored)."""
    d = Path(directory)
    return sorted(p for p in d.iterdir() if SHARD_RE.match(p.name))


def check_compatible(meta: Mapping[str, Any], expect: Mapping[str, Any], where: str = "shards") -> None:
    """Raise :class:`ShardMismatchError` naming every field of ``expect`` that ``meta`` contradicts.

    ``expect`` holds a subset of :data:`IDENTITY_FIELDS` (plus ``mmtok_version`` if wanted);
    nested ``preprocessing`` entries are compared key by key.
    """
    problems = []
    for k, want in expect.items():
        if k not in meta:
            problems.append(f"{k}: missing (expected {want!r})")
            continue
        have = meta[k]
        if k == "preprocessing" and isinstance(want, Mapping):
            for pk, pv in want.items():
                if _norm(have.get(pk)) != _norm(pv):
                    problems.append(f"preprocessing.{pk}: {have.get(pk)!r} (expected {pv!r})")
        elif _norm(have) != _norm(want):
            problems.append(f"{k}: {have!r} (expected {want!r})")
    if problems:
        raise ShardMismatchError(
            f"{where} do not match what is expected: " + "; ".join(problems)
            + ". They were made by another tokenizer, checkpoint or preprocessing; re-encode or point to the right shards."
        )


def _norm(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_norm(x) for x in v]
    if isinstance(v, list):
        return [_norm(x) for x in v]
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    return v


def resolve_shards(source: str | Path | Sequence[str | Path]) -> tuple[list[Path], dict[str, Any] | None]:
    """Shard files of a folder (via its manifest when present), a single file, a glob, or a list.

    Returns (files, manifest or None). A folder whose manifest lists a missing shard, or a
    source with no shards, raises a clear error.
    """
    if isinstance(source, (list, tuple)):
        files = [Path(p) for p in source]
        manifest = None
    else:
        p = Path(source)
        manifest = None
        if p.is_dir():
            mpath = p / MANIFEST_NAME
            if mpath.is_file():
                manifest = json.loads(mpath.read_text())
                files = [p / s["file"] for s in manifest["shards"]]
                missing = [str(f) for f in files if not f.is_file()]
                if missing:
                    raise FileNotFoundError(f"{mpath} lists shards that are missing: {missing[:5]}")
            else:
                files = list_shard_files(p)
        elif p.is_file():
            files = [p]
        else:
            import glob

            files = [Path(f) for f in sorted(glob.glob(str(source)))]
            if not files and not any(ch in str(source) for ch in "*?["):
                raise FileNotFoundError(f"no token shards at {source}: path does not exist")
    if not files:
        raise FileNotFoundError(f"no token shards (shard-NNNNNN.parquet) found in {source}")
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"token shard not found: {f}")
    return files, manifest


def load_metadata(files: Sequence[Path], expect: Mapping[str, Any] | None = None) -> ShardMetadata:
    """Read every shard footer, check all agree (and match ``expect``), return the common metadata."""
    first: dict[str, Any] | None = None
    first_file = None
    for f in files:
        doc = read_shard_meta(f)
        if first is None:
            first, first_file = doc, f
            ShardMetadata.from_dict(doc)
            continue
        check_compatible(doc, {k: first[k] for k in IDENTITY_FIELDS}, where=f"shard {f.name} (vs {first_file.name})")
    assert first is not None
    if expect:
        check_compatible(first, expect)
    return ShardMetadata.from_dict(first)


def write_manifest(directory: str | Path, num_expected: int | None = None) -> dict[str, Any] | None:
    """Scan finished shards (footers only) and write ``manifest.json`` and ``errors.jsonl``.

    With ``num_expected`` the manifest is written only once all shards 0..num_expected-1
    exist (so every rank may call it when it finishes; the last one to finish writes it,
    and concurrent writers produce the same bytes). Returns the manifest, or None if shards
    are still missing.
    """
    d = Path(directory)
    files = list_shard_files(d)
    if num_expected is not None:
        have = {int(SHARD_RE.match(f.name).group(1)) for f in files}
        if not all(i in have for i in range(num_expected)):
            return None
        files = [f for f in files if int(SHARD_RE.match(f.name).group(1)) < num_expected]
    if not files:
        raise FileNotFoundError(f"no shards in {d}")
    metas = [read_shard_meta(f) for f in files]
    common = ShardMetadata.from_dict(metas[0])
    for f, m in zip(files[1:], metas[1:]):
        check_compatible(m, {k: metas[0][k] for k in IDENTITY_FIELDS}, where=f"shard {f.name}")
    errors = [e for m in metas for e in m.get("errors", [])]
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "metadata": common.to_dict(),
        "num_items": int(sum(m["num_items"] for m in metas)),
        "num_errors": len(errors),
        "shards": [{"file": f.name, "num_items": int(m["num_items"]), "num_errors": len(m.get("errors", []))}
                   for f, m in zip(files, metas)],
    }
    write_errors(d, errors)
    atomic_write_json(d / MANIFEST_NAME, manifest)
    return manifest


def write_errors(directory: str | Path, errors: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``errors.jsonl`` (one skipped input per line) atomically; returns its path."""
    return atomic_write(Path(directory) / ERRORS_NAME,
                        lambda p: p.write_text("".join(json.dumps(dict(e), sort_keys=True) + "\n" for e in errors)))
