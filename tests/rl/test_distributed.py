"""2-process gloo FSDP2 update == 1-process update on the same data (parameters, to 1e-5)."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from vlarl_fast.rl import grpo
from vlarl_fast.rl.distributed import DistInfo, full_state_dict, parallelize
from vlarl_fast.rl.update import UpdateSettings, ppo_update

from _helpers import INSTRUCTIONS, sampled_batch, tiny_policy

TOLERANCE = 1e-5  # max |param difference|, fp32 (different reduction order across ranks)
SETTINGS = UpdateSettings(micro_batch_observations=8, mini_batches=1, ppo_epochs=1)
LR = 1e-3  # large enough that one step moves every parameter visibly


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_update(policy, batch, info, steps=1):
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=LR, weight_decay=0.01)
    adv = grpo.advantages(batch)
    metrics = None
    for _ in range(steps):
        metrics = ppo_update(policy, opt, batch, adv, INSTRUCTIONS, SETTINGS, info, torch.Generator().manual_seed(0))
    return metrics


def _worker(rank: int, world: int, port: int, out_path: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    info = DistInfo(rank=rank, world_size=world, backend="gloo")
    base = tiny_policy(0)
    batch = sampled_batch(base, seed=1)
    model = parallelize(tiny_policy(0), info)
    half = len(batch) // world
    # each rank holds whole groups: the GRPO advantage is computed on the full batch first
    adv = grpo.advantages(batch)
    local = batch.select(np.arange(rank * half, (rank + 1) * half))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=0.01)
    metrics = ppo_update(model, opt, local, adv[rank * half:(rank + 1) * half], INSTRUCTIONS, SETTINGS, info,
                         torch.Generator().manual_seed(0))
    state = full_state_dict(model, info)
    if rank == 0:
        torch.save({"state": state, "metrics": metrics}, out_path)
    dist.barrier()
    dist.destroy_process_group()


def test_two_gloo_ranks_match_one_process(tmp_path):
    torch.set_num_threads(1)
    base = tiny_policy(0)
    batch = sampled_batch(base, seed=1)
    single = tiny_policy(0)
    m1 = _one_update(single, batch, DistInfo())
    out = str(tmp_path / "rank0.pt")
    mp.start_processes(_worker, args=(2, _free_port(), out), nprocs=2, join=True, start_method="spawn")
    got = torch.load(out, weights_only=False)
    ref = single.state_dict()
    moved = 0
    worst = 0.0
    for name, value in ref.items():
        diff = (got["state"][name].float() - value.float()).abs().max().item()
        worst = max(worst, diff)
        moved += int((value.float() - base.state_dict()[name].float()).abs().max().item() > 0)
    print(f"2-rank vs 1-process: max |param diff| {worst:.3e} over {len(ref)} tensors ({moved} changed by the update)")
    assert moved > 10, "the update did not change the parameters"
    assert worst <= TOLERANCE, f"max parameter difference {worst:.3e} > {TOLERANCE}"
    for key in ("actor/pg_loss", "actor/clipfrac", "actor/ppo_kl"):
        assert abs(got["metrics"][key] - m1[key]) < 1e-5, (key, got["metrics"][key], m1[key])
