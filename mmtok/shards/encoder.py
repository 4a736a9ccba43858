"""``ShardEncoder``: a loaded tokenizer and its augmentation views turn batches into token shards.

It never opens a dataset: it is fed shard-tagged batches ``(shard_index, batch)`` in the
protocol of ``mmtok.data.collate`` (``{"x", "key", "path", "label", "meta", "errors"}``),
encodes every view of ``x`` and writes each finished shard from a background thread
(temp file, fsync, rename). Nothing here depends on the modality: the tokenizer says what
its codes look like (``codes_shape``, ``codebook_sizes``, ``describe()``) and the views
object (``mmtok.data.views_for``) says which copies of an item are stored
(``names``, ``views(x)``, ``describe()``). :mod:`mmtok.shards.encode` (one process per
rank) and :mod:`mmtok.shards.ray_engine` (one per model actor) both drive it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mmtok.shards.format import (
    ShardMetadata,
    ShardMismatchError,
    build_table,
    check_compatible,
    codes_dtype_for,
    read_shard_meta,
    shard_name,
    write_shard,
)

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class EncodeResult:
    """Summary of one rank's encode run."""

    output_dir: Path
    rank: int
    world_size: int
    num_shards: int
    shards_written: list[int] = field(default_factory=list)
    shards_skipped: list[int] = field(default_factory=list)
    items_written: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    manifest: dict[str, Any] | None = None

    @property
    def items_per_second(self) -> float:
        return self.items_written / self.seconds if self.seconds > 0 else 0.0


class CodeRunner:
    """Runs ``tok.encode`` in the chosen precision (bf16 autocast only when it leaves codes unchanged)."""

    def __init__(self, tok: torch.nn.Module, precision: str = "auto") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.tok, self.device, self.precision = tok, tok.device, precision

    @property
    def needs_probe(self) -> bool:
        """True when ``calibrate`` would run the model on a probe batch (``auto`` on CUDA)."""
        return self.precision == "auto" and self.device.type == "cuda"

    def calibrate(self, probe: Tensor | None) -> str:
        """Resolve ``auto``: bf16 on CUDA if the probe batch gives identical codes, else fp32."""
        if self.precision != "auto":
            return self.precision
        self.precision = "fp32"
        if self.device.type == "cuda" and probe is not None:
            ref = self(probe)
            self.precision = "bf16"
            self.precision = "bf16" if torch.equal(ref, self(probe)) else "fp32"
        return self.precision

    @torch.inference_mode()
    def __call__(self, x: Tensor) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        ctx = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.precision == "bf16" else nullcontext()
        with ctx:
            return self.tok.encode(x)


def _valid_length(meta: Mapping[str, Any]) -> int | None:
    """``meta["length"]`` as an int (None when the item does not say)."""
    v = meta.get("length")
    return None if v is None else int(v)


def _frame_rate(meta: Mapping[str, Any]) -> float | None:
    """``meta["fps"]`` (the frame rate of a clip's frames) as a float (None when the item does not say)."""
    v = meta.get("fps")
    return None if v is None else float(v)


def _repeat(values: Iterable[Any], k: int) -> list[Any]:
    """Each value ``k`` times in a row (one per stored copy of an item)."""
    return [v for v in values for _ in range(k)]


@dataclass
class _ShardBuffer:
    index: int
    keys: list[str] = field(default_factory=list)
    augs: list[str] = field(default_factory=list)
    codes: list[Tensor] = field(default_factory=list)  # (B * copies, *codes_shape) int on the encode device
    labels: list[int] = field(default_factory=list)
    captions: list[str | None] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    lengths: list[int | None] = field(default_factory=list)  # valid input samples (segmented data)
    fps: list[float | None] = field(default_factory=list)  # frame rate of each clip (video)
    errors: list[dict[str, Any]] = field(default_factory=list)


class _BackgroundWriter:
    """One writer thread; at most two shards in flight; write errors surface in the caller."""

    def __init__(self, write) -> None:
        self.write = write
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmtok-shard-writer")
        self.inflight: list[Future] = []

    def submit(self, buf: _ShardBuffer) -> None:
        for f in self.inflight:
            if f.done() or len(self.inflight) >= 2:
                f.result()
        self.inflight = [f for f in self.inflight if not f.done()] + [self.pool.submit(self.write, buf)]

    def wait(self) -> None:
        for f in self.inflight:
            f.result()
        self.inflight = []

    def close(self) -> None:
        self.pool.shutdown(wait=True)


class ShardEncoder:
    """Tokenizer + views + shard metadata -> shard files in ``output_dir``.

    Args:
        tok: a loaded tokenizer (eval mode, on the encode device).
        views: the augmentation views of ``tok.modality`` (``mmtok.data.views_for``).
        output_dir: the shard folder.
        identity: ``checkpoint_identity(checkpoint)`` (tokenizer name, hashes, path).
        preprocessing: what the data went through (recorded; compared on resume / read).
        source: the dataset spec (recorded); shard_size: source items per shard.
        precision: "fp32", "bf16" or "auto" (bf16 on CUDA when ``probe``, the first view of
            the first batch, gives the fp32 codes).
        compression: Parquet codec.
        store_length: write each item's ``meta["length"]`` (valid samples of a zero-padded
            fixed-length segment, e.g. the last audio chunk of a file) in the ``length`` column.
        store_fps: write each item's ``meta["fps"]`` (the frame rate of a clip's frames) in the
            ``fps`` column.
    """

    def __init__(
        self,
        tok: Any,
        views: Any,
        output_dir: str | Path,
        *,
        identity: Mapping[str, Any],
        preprocessing: Mapping[str, Any],
        source: str,
        shard_size: int,
        precision: str = "auto",
        probe: Tensor | None = None,
        compression: str = "zstd",
        store_length: bool = False,
        store_fps: bool = False,
    ) -> None:
        import mmtok

        self.tok, self.views, self.compression, self.store_length = tok, views, compression, bool(store_length)
        self.store_fps = bool(store_fps)
        self.runner = CodeRunner(tok, precision)
        self.out = Path(output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.augs = list(views.names)
        self.codes_shape = [int(s) for s in tok.codes_shape]
        sizes = [int(s) for s in tok.codebook_sizes]
        self.meta = ShardMetadata(
            tokenizer=identity["tokenizer"], family=identity["family"], modality=tok.modality,
            config_hash=identity["config_hash"], checkpoint_hash=identity["checkpoint_hash"],
            codebook_sizes=sizes, token_shape=self.codes_shape, codes_dtype=codes_dtype_for(sizes),
            preprocessing={**preprocessing, **views.describe()}, modality_info=dict(tok.describe()),
            mmtok_version=mmtok.__version__, checkpoint_path=identity.get("checkpoint_path", ""), source=source,
            shard_size=int(shard_size), precision=self.runner.calibrate(probe),
        )
        self.held: list[_ShardBuffer] = []  # finished shards without a readable item (see write_held)

    def encode_batch(self, x: Tensor) -> Tensor:
        """Codes of every view of ``x``: (B, copies, *codes_shape), on the encode device."""
        return torch.stack([self.runner(v) for v in self.views.views(x)], dim=1)

    def existing(self, shard: int) -> dict[str, Any] | None:
        """Footer metadata of shard ``shard`` if already written (it must match this run), else None.

        Removes torn temporary files of that shard left by a killed run.
        """
        path = self.out / shard_name(shard)
        for tmp in self.out.glob(f".{shard_name(shard)}.*.tmp"):
            tmp.unlink(missing_ok=True)
        if not path.is_file():
            return None
        doc = read_shard_meta(path)
        expect = {**self.meta.identity(), "shard_size": self.meta.shard_size, "source": self.meta.source}
        try:
            check_compatible(doc, expect, where=f"existing shard {path}")
        except ShardMismatchError as e:
            raise ShardMismatchError(f"{e} Use an empty output directory for a different encode.") from None
        return doc

    def encode_shards(self, batches: Iterable[tuple[int, Mapping[str, Any]]], result: EncodeResult, *,
                      total: int | None = None, progress: bool = False) -> EncodeResult:
        """Encode shard-tagged batches and write every shard once its last batch is in.

        ``batches`` yields ``(shard_index, batch)``; the batches of one shard are
        consecutive (a new index finishes the previous shard). Shards without a readable
        item are held back in ``held`` (the driver decides: :meth:`write_held`).
        ``total``: source items to come, for the progress bar.
        """
        bar = None
        if progress and total:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, unit="item", desc=f"encode {self.out.name}", dynamic_ncols=True)
        writer = _BackgroundWriter(self._write)
        buf: _ShardBuffer | None = None
        seen: set[int] = set()
        try:
            for shard, batch in batches:
                if buf is None or buf.index != shard:
                    if shard in seen:
                        raise ValueError(f"batches of shard {shard} are not consecutive")
                    if buf is not None:
                        self._finish(buf, writer, result)
                    buf = _ShardBuffer(int(shard))
                    seen.add(buf.index)
                self._add(buf, batch)
                if bar is not None:
                    bar.update(len(batch["key"]) + len(batch["errors"]))
            if buf is not None:
                self._finish(buf, writer, result)
            writer.wait()
        finally:
            writer.close()
            if bar is not None:
                bar.close()
        return result

    def write_held(self, result: EncodeResult) -> None:
        """Write the held-back shards (every input of them was unreadable): their footers list the errors."""
        for buf in self.held:
            self._write(buf)
            result.shards_written.append(buf.index)
        self.held = []

    def _add(self, buf: _ShardBuffer, batch: Mapping[str, Any]) -> None:
        buf.errors.extend({"path": p, "error": m, "shard": buf.index} for p, m in batch["errors"])
        if batch["x"] is None:
            return
        codes = self.encode_batch(batch["x"])  # stays on the device until the shard is complete
        n, copies = codes.shape[0], codes.shape[1]
        buf.codes.append(codes.reshape(n * copies, *codes.shape[2:]))
        buf.keys.extend(_repeat(batch["key"], copies))
        buf.augs.extend(self.augs * n)
        buf.labels.extend(_repeat((int(v) for v in batch["label"].tolist()), copies))
        buf.captions.extend(_repeat((m.get("caption") for m in batch["meta"]), copies))
        buf.paths.extend(_repeat(batch["path"], copies))
        if self.store_length:
            buf.lengths.extend(_repeat((_valid_length(m) for m in batch["meta"]), copies))
        if self.store_fps:
            buf.fps.extend(_repeat((_frame_rate(m) for m in batch["meta"]), copies))

    def _finish(self, buf: _ShardBuffer, writer: _BackgroundWriter, result: EncodeResult) -> None:
        result.errors.extend(buf.errors)
        if not buf.keys:
            self.held.append(buf)
            return
        buf.codes = [torch.cat(buf.codes).cpu()]
        writer.submit(buf)
        result.shards_written.append(buf.index)
        result.items_written += len(buf.keys)

    def _write(self, buf: _ShardBuffer) -> None:
        codes = torch.cat(buf.codes).numpy() if buf.codes else np.zeros((0, *self.codes_shape), np.int64)
        table = build_table(self.meta, buf.keys, list(codes), augs=buf.augs, labels=buf.labels, captions=buf.captions,
                            paths=buf.paths, lengths=buf.lengths if self.store_length else None,
                            fps=buf.fps if self.store_fps else None,
                            extra_meta={"shard_index": buf.index, "errors": buf.errors})
        write_shard(self.out / shard_name(buf.index), table, compression=self.compression)
