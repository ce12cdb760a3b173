"""FSDP2 mixed precision on 2 gloo ranks (grpo.param_dtype=bfloat16): the sharded parameters AdamW
updates stay float32 (master weights), gradients are float32, the forward runs in bf16, and a bf16
rollout replica synced from the shards gives bit-identical log-probs to the training model's bf16
forward on the same micro-batches. With grpo.cpu_offload (CUDA only; a one-line error without a
GPU) the same update runs from host shards."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from vlarl_fast.policy.checkpoint import empty_like
from vlarl_fast.rl import grpo
from vlarl_fast.rl.distributed import DistInfo, parallelize, sync_rollout_policy
from vlarl_fast.rl.update import UpdateSettings, ppo_update, recompute_old_logprobs

from _helpers import INSTRUCTIONS, sampled_batch, tiny_policy

SETTINGS = UpdateSettings(micro_batch_observations=8)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_path: str, offload: bool) -> None:
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    info = DistInfo(rank=rank, world_size=world, backend="gloo")
    base = tiny_policy(0)
    replica = empty_like(base, dtype=torch.bfloat16, device="cpu")
    train = parallelize(base, info, param_dtype=torch.bfloat16, cpu_offload=offload)
    sync_rollout_policy(train, replica, info)
    batch = sampled_batch(tiny_policy(0), seed=20 + rank)
    by_train = recompute_old_logprobs(train, batch, INSTRUCTIONS, SETTINGS, info)
    by_replica = recompute_old_logprobs(replica, batch, INSTRUCTIONS, SETTINGS, info)
    before = {k: v.full_tensor().clone() for k, v in train.state_dict().items() if isinstance(v, DTensor)}
    opt = torch.optim.AdamW([p for p in train.parameters() if p.requires_grad], lr=1e-3)
    batch.logp = by_train
    ppo_update(train, opt, batch, grpo.advantages(batch), INSTRUCTIONS, SETTINGS, info, torch.Generator().manual_seed(0))
    params = [p for p in train.parameters() if p.requires_grad]
    report = {
        "identical": bool(np.array_equal(by_train, by_replica)),
        "master_fp32": all(p.dtype == torch.float32 for p in train.parameters()),
        "grads_fp32": all(p.grad is None or p.grad.dtype == torch.float32 for p in params),
        "moved": sum(int(not torch.equal(before[k], v.full_tensor())) for k, v in train.state_dict().items()
                     if k in before),
        "replica_bf16": all(p.dtype == torch.bfloat16 for p in replica.parameters()),
    }
    torch.save(report, f"{out_path}.{rank}")
    dist.barrier()
    dist.destroy_process_group()


def _run(tmp_path, offload: bool) -> None:
    out = str(tmp_path / f"mp{offload}")
    mp.start_processes(_worker, args=(2, _free_port(), out, offload), nprocs=2, join=True, start_method="spawn")
    for rank in range(2):
        r = torch.load(f"{out}.{rank}", weights_only=False)
        print(f"offload={offload} rank {rank}: {r}")
        assert r["identical"] and r["master_fp32"] and r["grads_fp32"] and r["replica_bf16"], r
        assert r["moved"] > 10, r


def test_bf16_forward_fp32_master_weights_and_identical_replica(tmp_path):
    _run(tmp_path, offload=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cpu_offload(tmp_path):
    _run(tmp_path, offload=True)


def test_cpu_offload_without_a_gpu_is_a_one_line_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(ValueError, match="grpo.cpu_offload: needs FSDP2 on CUDA"):
        parallelize(tiny_policy(0), DistInfo(rank=0, world_size=2, backend="gloo"), cpu_offload=True)
    with pytest.raises(ValueError, match="grpo.cpu_offload"):
        parallelize(tiny_policy(0), DistInfo(), cpu_offload=True)
