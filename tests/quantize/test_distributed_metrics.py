"""Codebook metrics are reduced across ranks under torch.distributed (gloo, CPU)."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mmtok.quantize import FSQ


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        q = FSQ(dim=4, levels=[4, 4]).eval()
        # rank r uses codes {r*4 .. r*4+3} only: each rank alone sees 4/16 codes
        codes = torch.arange(4).repeat(8) + rank * 4
        out[rank] = {k: float(v) for k, v in q.code_metrics(codes.reshape(2, 16)).items()}
    finally:
        dist.destroy_process_group()


def test_usage_is_reduced_across_ranks():
    world = 2
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(world, _free_port(), out), nprocs=world, join=True)
        res = dict(out)
    for rank in range(world):
        assert res[rank]["usage"] == 8 / 16  # union of both ranks' codes
        assert abs(res[rank]["perplexity"] - 8.0) < 1e-4
        assert res[rank]["dead_codes"] == 8
    assert FSQ(dim=4, levels=[4, 4]).eval().code_metrics(torch.arange(4).reshape(1, 4))["usage"] == 4 / 16
