"""``TokenDataset``: token shards as training sequences for autoregressive generators.

    ds = TokenDataset("tokens/", batch_size=64, seed=0, bos_id=4096, eos_id=4097)
    for batch in ds.loader(num_workers=2):        # batch["input_ids"]: (64, 34) int64
        ...
        state = ds.state_dict()                     # save with the model; resume exactly:
    ds.load_state_dict(state)

Order: every epoch draws a permutation of all items from ``(seed, epoch)``; rank ``r`` of
``world_size`` takes items ``perm[r::world_size]`` (cut to an equal count on every rank),
then elements (samples, packed chunks, or batches) are made from that stream in order.
DataLoader workers take elements round-robin, so the element order does not depend on the
number of workers and a resumed run yields exactly the batches it would have yielded.

Codes are flattened in storage order, row-major over each item's ``shape``: 2D image
``(h, w)`` codes in raster order, video ``(t, h, w)`` codes t-major (every position of latent
frame 0 in raster order, then frame 1, ...), so a prefix of a video sequence is its first
latent frames; ``to_codes(ids).reshape(meta.token_shape)`` gives back the grid.

Residual codes (``Q = meta.num_codebooks > 1`` levels, rows of shape ``(..., Q)``, e.g. audio
``(T, Q)``) are flattened level-interleaved, as stored: ``t0q0, t0q1, ..., t0q(Q-1), t1q0, ...``.
With ``level_offsets=True`` (the default) level ``q`` ids are shifted by ``sum(K[:q])`` so the
levels are distinct tokens and the code vocabulary is ``sum(K)`` (``Q * K``); with ``False``
the levels share ids ``[0, max(K))``. Single-codebook shards are the same either way.
:meth:`TokenDataset.to_codes` maps generated ids back to the tokenizer's codes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mmtok.distributed import rank_world
from mmtok.shards.format import ShardMetadata, load_metadata, read_shard, resolve_shards


class TokenDataset(IterableDataset):
    """Random access and deterministic, resumable, rank/worker-split iteration over token shards.

    Args:
        source: a shard folder (uses its manifest), one shard file, a glob, or a list of files.
        expect: metadata the shards must match (e.g. ``{"tokenizer": "titok_s128_fsq",
            "checkpoint_hash": ...}``, see :func:`mmtok.shards.expected_metadata`); a
            mismatch raises :class:`~mmtok.shards.ShardMismatchError`.
        seq_len: pack item sequences back to back and cut them into chunks of ``seq_len``
            tokens (the trailing partial chunk of an epoch is dropped). ``None``: one item
            per sample (padded with ``pad_id`` when batched and lengths differ).
        batch_size: yield batches of this many samples (last partial batch dropped) instead
            of single samples.
        shuffle / seed: per-epoch permutation drawn from ``(seed, epoch)``.
        rank / world_size: data-parallel split (default: from ``torch.distributed`` if
            initialised, else 0 / 1).
        vocab_offset: added to every code id, so several modalities share one vocabulary.
        level_offsets: residual codes only: shift level ``q``'s ids by the sizes of the
            levels before it (distinct ids per level, ``code_vocab_size = sum(K)``); False
            keeps the shared ids (``code_vocab_size = max(K)``).
        bos_id / eos_id: absolute ids put before / after every item (must lie outside
            ``[vocab_offset, vocab_offset + code_vocab_size)``).
        pad_id: id used to pad variable-length items in a batch (default: eos, bos, or 0).
    """

    def __init__(
        self,
        source: str | Path | Sequence[str | Path],
        *,
        expect: Mapping[str, Any] | None = None,
        seq_len: int | None = None,
        batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        vocab_offset: int = 0,
        level_offsets: bool = True,
        bos_id: int | None = None,
        eos_id: int | None = None,
        pad_id: int | None = None,
    ) -> None:
        super().__init__()
        self.files, self.manifest = resolve_shards(source)
        self.meta: ShardMetadata = load_metadata(self.files, expect)
        if rank is None or world_size is None:
            rank, world_size = rank_world(env=False)
        if not (0 <= rank < world_size):
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        if seq_len is not None and seq_len < 2:
            raise ValueError(f"seq_len must be >= 2, got {seq_len}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if vocab_offset < 0:
            raise ValueError(f"vocab_offset must be >= 0, got {vocab_offset}")
        sizes = [int(k) for k in self.meta.codebook_sizes]
        self.num_levels = len(sizes)
        self.level_offsets = bool(level_offsets)
        leveled = self.level_offsets and self.num_levels > 1
        if leveled and (not self.meta.token_shape or int(self.meta.token_shape[-1]) != self.num_levels):
            raise ValueError(f"shards have {self.num_levels} codebooks but token_shape {self.meta.token_shape} does not "
                             "end with that level axis; pass level_offsets=False")
        # First id of each level (None: no shift).
        self._level_start = np.cumsum([0] + sizes[:-1]).astype(np.int64) if leveled else None
        self.code_vocab_size = int(sum(sizes)) if leveled else self.meta.vocab_size
        lo, hi = vocab_offset, vocab_offset + self.code_vocab_size
        for name, sid in (("bos_id", bos_id), ("eos_id", eos_id), ("pad_id", pad_id)):
            if sid is not None and (sid < 0 or (name != "pad_id" and lo <= sid < hi)):
                raise ValueError(f"{name}={sid} collides with the code ids [{lo}, {hi}); pick an id outside that range")
        self.seq_len, self.batch_size, self.shuffle, self.seed = seq_len, batch_size, shuffle, int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.vocab_offset, self.bos_id, self.eos_id = int(vocab_offset), bos_id, eos_id
        self.pad_id = pad_id if pad_id is not None else (eos_id if eos_id is not None else (bos_id if bos_id is not None else 0))
        self._load()
        if self._level_start is not None and (self._lengths % self.num_levels).any():
            raise ValueError(f"some items hold a token count that is not a multiple of the {self.num_levels} levels")
        if self.num_items < self.world_size:
            raise ValueError(f"{self.num_items} items cannot be split over {self.world_size} ranks")
        self.epoch = 0
        self.position = 0  # elements of the current epoch already handed out on this rank

    # --- storage -------------------------------------------------------------------------
    def _load(self) -> None:
        flats, lens, labels, self._shard_starts = [], [], [], [0]
        for f in self.files:
            t = read_shard(f, ["codes", "label"])
            codes = t.column("codes").combine_chunks() if t.num_rows else pa.array([], t.schema.field("codes").type)
            if isinstance(codes, pa.ChunkedArray):
                codes = codes.combine_chunks()
            offs = codes.offsets.to_numpy()
            flats.append(codes.values.to_numpy(zero_copy_only=False)[offs[0]: offs[-1]])
            lens.append(np.diff(offs).astype(np.int64))
            labels.append(t.column("label").to_numpy(zero_copy_only=False))
            self._shard_starts.append(self._shard_starts[-1] + t.num_rows)
        self._flat = np.concatenate(flats) if flats else np.zeros(0, np.uint16)
        self._lengths = np.concatenate(lens)
        self._offsets = np.zeros(len(self._lengths) + 1, np.int64)
        np.cumsum(self._lengths, out=self._offsets[1:])
        lab = np.concatenate(labels).astype(np.float64)  # nulls arrive as NaN
        self._labels = np.where(np.isnan(lab), -1, lab).astype(np.int64)
        self.num_items = len(self._lengths)
        fixed = self.num_items > 0 and bool((self._lengths == self._lengths[0]).all())
        self._codes2d = self._flat.reshape(self.num_items, -1) if fixed and self._lengths[0] > 0 else None
        self._keys: list[pa.Array] | None = None

    @property
    def labels(self) -> np.ndarray:
        """Class label of every item in storage order (int64; -1 where the shards hold none)."""
        return self._labels

    @property
    def vocab_size(self) -> int:
        """Smallest vocabulary holding every id this dataset yields (codes + offsets, BOS/EOS/pad)."""
        ids = [self.vocab_offset + self.code_vocab_size] + [s + 1 for s in (self.bos_id, self.eos_id, self.pad_id) if s is not None]
        return max(ids)

    @property
    def num_tokens(self) -> int:
        """Total code tokens stored (without BOS/EOS)."""
        return int(self._offsets[-1])

    def codes(self, index: int) -> np.ndarray:
        """Raw code ids of item ``index`` (storage order), reshaped to its token shape."""
        i = self._check_index(index)
        shape = read_shard(self.files[self._shard_of(i)], ["shape"]).column("shape")[i - self._shard_starts[self._shard_of(i)]].as_py()
        return self._flat[self._offsets[i]: self._offsets[i + 1]].reshape(shape)

    def to_codes(self, ids: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Code ids as this dataset yields them (one item's body, no BOS/EOS) -> the tokenizer's codes, int64:
        ``(L,)`` for one codebook, ``(L // Q, Q)`` for ``Q`` residual levels (``tok.decode(codes[None])``)."""
        x = torch.as_tensor(np.asarray(ids), dtype=torch.int64) - self.vocab_offset
        if self.num_levels == 1:
            return x
        if x.ndim != 1 or x.numel() % self.num_levels:
            raise ValueError(f"expected a flat sequence of a multiple of {self.num_levels} ids, got shape {tuple(x.shape)}")
        x = x.reshape(-1, self.num_levels)
        if self._level_start is not None:
            x = x - torch.from_numpy(self._level_start)
        return x

    def _shift(self, pos: np.ndarray) -> np.ndarray | int:
        """What to add to the raw codes at in-item positions ``pos``: vocab offset plus the level's first id."""
        if self._level_start is None:
            return self.vocab_offset
        return self._level_start[pos % self.num_levels] + self.vocab_offset

    def key(self, index: int) -> tuple[str, str]:
        """(key, aug) of item ``index``."""
        i = self._check_index(index)
        s = self._shard_of(i)
        t = read_shard(self.files[s], ["key", "aug"])
        r = i - self._shard_starts[s]
        return t.column("key")[r].as_py(), t.column("aug")[r].as_py()

    def _shard_of(self, i: int) -> int:
        return int(np.searchsorted(self._shard_starts, i, side="right") - 1)

    def _check_index(self, index: int) -> int:
        i = int(index)
        if i < 0:
            i += self.num_items
        if not 0 <= i < self.num_items:
            raise IndexError(f"item index {index} out of range for {self.num_items} items")
        return i

    def _sequence(self, i: int) -> np.ndarray:
        """Item ``i`` as int64 ids: [bos] + codes + vocab_offset (+ level offsets) + [eos]."""
        body = self._flat[self._offsets[i]: self._offsets[i + 1]].astype(np.int64)
        body += self._shift(np.arange(len(body)))
        parts = ([np.array([self.bos_id])] if self.bos_id is not None else []) + [body] + (
            [np.array([self.eos_id])] if self.eos_id is not None else [])
        return np.concatenate(parts) if len(parts) > 1 else body

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Item ``index`` in storage order: ``{"input_ids": (L,) int64, "label": int, "index": int}``."""
        i = self._check_index(index)
        return {"input_ids": torch.from_numpy(self._sequence(i)), "label": int(self._labels[i]), "index": i}

    # --- order -----------------------------------------------------------------------------
    def _rank_items(self, epoch: int) -> np.ndarray:
        n = self.num_items
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        per_rank = n // self.world_size
        return order[self.rank:: self.world_size][:per_rank]

    def _extra(self) -> int:
        return int(self.bos_id is not None) + int(self.eos_id is not None)

    def _num_samples(self) -> int:
        per_rank = self.num_items // self.world_size
        if self.seq_len is None:
            return per_rank
        # Token count of the rank's stream differs per epoch only if lengths vary; use the
        # exact count for the current epoch.
        items = self._rank_items(self.epoch)
        total = int(self._lengths[items].sum()) + self._extra() * len(items)
        return total // self.seq_len

    def __len__(self) -> int:
        """Elements (samples or batches) per epoch on this rank."""
        n = self._num_samples()
        return n if self.batch_size is None else n // self.batch_size

    def _make_samples(self, items: np.ndarray, cum: np.ndarray | None, sample_ids: np.ndarray) -> dict[str, torch.Tensor]:
        """Build samples ``sample_ids`` (indices into the rank's sample stream) as a batch dict."""
        extra = self._extra()
        if self.seq_len is None:
            idx = items[sample_ids]
            if self._codes2d is not None:
                body = self._codes2d[idx].astype(np.int64)
                body += self._shift(np.arange(body.shape[1]))
                cols = ([np.full((len(idx), 1), self.bos_id, np.int64)] if self.bos_id is not None else []) + [body] + (
                    [np.full((len(idx), 1), self.eos_id, np.int64)] if self.eos_id is not None else [])
                ids = np.concatenate(cols, axis=1) if extra else body
                lengths = np.full(len(idx), ids.shape[1], np.int64)
            else:
                seqs = [self._sequence(int(i)) for i in idx]
                lengths = np.array([len(s) for s in seqs], np.int64)
                ids = np.full((len(seqs), int(lengths.max())), self.pad_id, np.int64)
                for r, s in enumerate(seqs):
                    ids[r, : len(s)] = s
            return {"input_ids": torch.from_numpy(ids), "lengths": torch.from_numpy(lengths),
                    "label": torch.from_numpy(self._labels[idx]), "index": torch.from_numpy(idx.astype(np.int64))}
        # Packed: sample c covers tokens [c*L, (c+1)*L) of the concatenated stream of the
        # rank's items (each [bos] + codes + [eos]); gathered with vectorised index maths.
        assert cum is not None
        L, nb = self.seq_len, int(self.bos_id is not None)
        pos = (sample_ids[:, None].astype(np.int64) * L + np.arange(L)).reshape(-1)  # stream positions
        if self._codes2d is not None:
            # Fixed-length items: build the touched stretch of the stream as a matrix, then gather.
            T = self._codes2d.shape[1]
            S = T + extra
            j = pos // S
            j0, j1 = int(j.min()), int(j.max()) + 1
            seqs = np.empty((j1 - j0, S), np.int64)
            seqs[:, nb: nb + T] = self._codes2d[items[j0:j1]]
            seqs[:, nb: nb + T] += self._shift(np.arange(T))
            if self.bos_id is not None:
                seqs[:, 0] = self.bos_id
            if self.eos_id is not None:
                seqs[:, -1] = self.eos_id
            out = seqs.reshape(-1)[pos - j0 * S].reshape(len(sample_ids), L)
            jj = j.reshape(len(sample_ids), L)
            return {"input_ids": torch.from_numpy(out), "segment_ids": torch.from_numpy(jj - jj[:, :1])}
        j = np.searchsorted(cum, pos, side="right")  # index into the rank's item order
        item_start = np.where(j > 0, cum[np.maximum(j - 1, 0)], 0)
        a = pos - item_start  # offset inside the item's sequence
        it = items[j]
        body = a - nb
        n_codes = self._lengths[it]
        in_body = (body >= 0) & (body < n_codes)
        src = self._offsets[it] + np.clip(body, 0, None)
        flat = self._flat if len(self._flat) else np.zeros(1, np.int64)
        out = np.where(in_body, flat[np.minimum(src, len(flat) - 1)].astype(np.int64) + self._shift(np.clip(body, 0, None)), 0)
        if self.bos_id is not None:
            out = np.where(body < 0, self.bos_id, out)
        if self.eos_id is not None:
            out = np.where(body >= n_codes, self.eos_id, out)
        out = out.reshape(len(sample_ids), L)
        jj = j.reshape(len(sample_ids), L)
        seg = jj - jj[:, :1]
        return {"input_ids": torch.from_numpy(np.ascontiguousarray(out)), "segment_ids": torch.from_numpy(seg)}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        epoch, start = self.epoch, self.position
        items = self._rank_items(epoch)
        cum = None
        if self.seq_len is not None:
            cum = np.cumsum(self._lengths[items] + self._extra())
        n_elems = len(self)
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        bs = self.batch_size
        for e in range(start + wid, n_elems, nw):
            ids = np.arange(e * bs, (e + 1) * bs) if bs is not None else np.array([e])
            batch = self._make_samples(items, cum, ids)
            if bs is None:
                batch = {k: v[0] for k, v in batch.items()}
            if info is None:
                self.position = e + 1
            yield batch
        if info is None:
            self.epoch, self.position = epoch + 1, 0

    def loader(self, num_workers: int = 0, pin_memory: bool = False, prefetch_factor: int | None = None) -> "TokenLoader":
        """A DataLoader over this dataset that keeps :meth:`state_dict` exact with worker processes."""
        return TokenLoader(self, num_workers=num_workers, pin_memory=pin_memory, prefetch_factor=prefetch_factor)

    # --- resume -----------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Start the next iteration at the beginning of ``epoch``."""
        self.epoch, self.position = int(epoch), 0

    def _signature(self) -> dict[str, Any]:
        return {"num_items": self.num_items, "seed": self.seed, "shuffle": self.shuffle, "seq_len": self.seq_len,
                "batch_size": self.batch_size, "rank": self.rank, "world_size": self.world_size,
                "vocab_offset": self.vocab_offset, "level_offsets": self._level_start is not None,
                "bos_id": self.bos_id, "eos_id": self.eos_id,
                "config_hash": self.meta.config_hash, "checkpoint_hash": self.meta.checkpoint_hash}

    def state_dict(self) -> dict[str, Any]:
        """Position to resume from: epoch and elements already handed out, plus the settings they refer to."""
        return {"epoch": self.epoch, "position": self.position, **self._signature()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume at ``state``'s position; refuses a state saved with other data or settings."""
        sig = self._signature()
        diff = {k: (state.get(k), v) for k, v in sig.items() if k in state and state[k] != v}
        if diff:
            raise ValueError("TokenDataset state was saved with different data or settings (saved, current): "
                             + ", ".join(f"{k}={a!r} vs {b!r}" for k, (a, b) in diff.items()))
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


class TokenLoader:
    """Iterates a :class:`TokenDataset` through a DataLoader and tracks the position in the main process."""

    def __init__(self, dataset: TokenDataset, num_workers: int = 0, pin_memory: bool = False,
                 prefetch_factor: int | None = None) -> None:
        self.dataset = dataset
        kw: dict[str, Any] = {"prefetch_factor": prefetch_factor} if (num_workers and prefetch_factor) else {}
        self._dl = DataLoader(dataset, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
                              persistent_workers=False, **kw)
        self.num_workers = num_workers

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        ds = self.dataset
        if self.num_workers == 0:
            yield from ds
            return
        epoch, n = ds.epoch, len(ds)
        for batch in self._dl:
            ds.position += 1
            yield batch
        if ds.position >= n:
            ds.epoch, ds.position = epoch + 1, 0

    def state_dict(self) -> dict[str, Any]:
        return self.dataset.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.dataset.load_state_dict(state)
