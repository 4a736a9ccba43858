"""``mmtok encode --engine ray``: the same encode as a Ray Data pipeline, for clusters.

The pending shard indices form a Ray dataset; ``map_batches`` sends them to a pool of
model actors (one per GPU, or CPU actors), each holding a loaded tokenizer
(an :class:`~mmtok.shards.encode.EncodeJob` around a
:class:`~mmtok.shards.encoder.ShardEncoder`) that encodes a whole shard and writes it as
Parquet with the same atomic writer as the torch engine. The output therefore equals the
torch engine's (same files, same bytes), reruns skip finished shards, and the driver writes
the manifest at the end. Needs ``pip install 'mmtok[ray]'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class _ShardActor:
    """Ray actor: opens the encode job once (tokenizer, views, dataset), then encodes the shard indices it is sent."""

    def __init__(self, checkpoint: str, input: str, output_dir: str, options: dict[str, Any]) -> None:
        import torch

        from mmtok.shards.encode import open_job

        torch.set_num_threads(max(1, int(options.pop("torch_threads", 0)) or torch.get_num_threads()))
        self.job = open_job(checkpoint, input, output_dir, **options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from mmtok.shards.encode import EncodeResult

        shards = [int(i) for i in batch["shard"]]
        res = EncodeResult(output_dir=self.job.encoder.out, rank=0, world_size=1, num_shards=self.job.num_shards)
        counts, errors = [], []
        for i in shards:
            before_items, before_err = res.items_written, len(res.errors)
            self.job.run([i], res)
            self.job.encoder.write_held(res)  # an actor sees one shard, not the dataset: write empty ones too
            counts.append(res.items_written - before_items)
            errors.append(len(res.errors) - before_err)
        return {"shard": np.array(shards, np.int64), "num_items": np.array(counts, np.int64),
                "num_errors": np.array(errors, np.int64)}


def encode_with_ray(
    checkpoint: str | Path,
    input: str | Path,
    output_dir: str | Path,
    *,
    address: str | None = None,
    num_actors: int | None = None,
    gpus_per_actor: float | None = None,
    cpus_per_actor: float = 1.0,
    num_workers: int = 0,
    device: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Encode ``input`` into ``output_dir`` shards with Ray Data; returns the manifest.

    ``address``: an existing cluster (``"auto"``) or None for a local Ray. ``num_actors``:
    model replicas (default: number of GPUs in the cluster, or 1 without GPUs).
    ``gpus_per_actor``: default 1 when the cluster has GPUs, else 0 (CPU actors).
    Other keyword arguments are those of :func:`mmtok.shards.encode_dataset`
    (batch_size, shard_size, precision, seed, the modality options, ...).
    Raises ``NoReadableItemsError`` when the shards hold no item (every input unreadable).
    """
    try:
        import ray
    except ImportError as e:  # pragma: no cover - depends on the extra
        raise ImportError("the Ray engine needs Ray Data: pip install 'mmtok[ray]' (or 'ray[data]')") from e
    from mmtok.shards.encode import no_items_error, open_job
    from mmtok.shards.format import write_manifest

    options.pop("progress", None)
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True, configure_logging=False)
    gpus = float(ray.cluster_resources().get("GPU", 0))
    if gpus_per_actor is None:
        gpus_per_actor = 1.0 if gpus > 0 else 0.0
    if num_actors is None:
        num_actors = max(1, int(gpus // gpus_per_actor)) if gpus_per_actor > 0 else 1
    actor_device = device or ("cuda" if gpus_per_actor > 0 else "cpu")

    # The driver plans the work (cheap: no model forward) on CPU: which shards are pending.
    planner = open_job(checkpoint, input, output_dir, device="cpu", num_workers=0,
                       **{k: v for k, v in options.items() if k != "precision"})
    pending = [i for i in range(planner.num_shards) if planner.encoder.existing(i) is None]
    num_shards, out = planner.num_shards, planner.encoder.out
    del planner
    if pending:
        actor_opts = dict(options, device=actor_device, num_workers=num_workers)
        ds = ray.data.from_items([{"shard": i} for i in pending], override_num_blocks=len(pending))
        ds = ds.map_batches(
            _ShardActor,
            fn_constructor_kwargs={"checkpoint": str(checkpoint), "input": str(input), "output_dir": str(output_dir),
                                   "options": actor_opts},
            batch_size=1,
            concurrency=min(num_actors, len(pending)),
            num_gpus=gpus_per_actor,
            num_cpus=cpus_per_actor,
            batch_format="numpy",
        )
        done = ds.take_all()
        written = sorted(int(r["shard"]) for r in done)
        if written != sorted(pending):
            raise RuntimeError(f"Ray encode finished shards {written}, expected {sorted(pending)}")
    manifest = write_manifest(out, num_shards)
    assert manifest is not None
    if manifest["num_items"] == 0:
        raise no_items_error(out, manifest["num_errors"], input)
    return manifest
