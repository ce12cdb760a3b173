"""torch.distributed for SPMD training: process group, reductions, and FSDP2 sharding.

Launch with `torchrun --nproc-per-node N [--nnodes M ...] -m vlarl_fast.cli train ...` (or without
torchrun for one process). Backend: NCCL when CUDA is available, gloo otherwise. Every rank runs
its own engine and a share of the groups; the policy is sharded with FSDP2 (`fully_shard`, bf16
compute and fp32 gradient reduction on CUDA; fp32 on CPU). Rollouts use an unsharded replica of
the weights (`sync_rollout_policy`), so ranks need not make the same number of policy calls.

Where a rollout policy's forward is collective (`uses_collectives`: FSDP-sharded modules, whose
forward all-gathers), every rank must make the same number of policy calls: the decisions that
set that number are agreed over ranks by all-reduce. `make_all_done` ends a rollout when every
rank's envs are done (ranks done earlier run padding calls), and `sampling_rounds` runs a
dynamic-sampling round on every rank as long as any rank still needs groups.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or dist.is_initialized()


def init(backend: str | None = None) -> DistInfo:
    """Initialises the default process group when launched by torchrun (WORLD_SIZE set)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not dist.is_initialized():
        return DistInfo()
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local, backend=backend)


def shutdown() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def device_for(info: DistInfo) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


def all_reduce_sum(values: torch.Tensor | float, info: DistInfo) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=torch.float64).clone()
    if info.enabled:
        dev = device_for(info) if info.backend == "nccl" else torch.device("cpu")
        t = t.to(dev)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t = t.cpu()
    return t


def all_reduce_min(value: int, info: DistInfo) -> int:
    t = torch.tensor([value], dtype=torch.int64)
    if info.enabled:
        dev = device_for(info) if info.backend == "nccl" else torch.device("cpu")
        t = t.to(dev)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def agree_all(flag: bool, info: DistInfo) -> bool:
    """True when `flag` is true on every rank (all-reduce MIN); `flag` itself alone."""
    return bool(all_reduce_min(int(bool(flag)), info))


def agree_any(flag: bool, info: DistInfo) -> bool:
    """True when `flag` is true on some rank."""
    return not agree_all(not flag, info)


def make_all_done(info: DistInfo) -> Callable[[bool], bool] | None:
    """The rollout's `all_done` agreement for this process group (None for one process)."""
    if not info.enabled:
        return None
    return lambda local_done: agree_all(local_done, info)


def uses_collectives(model: torch.nn.Module) -> bool:
    """True when a forward of `model` runs collectives (it holds FSDP2-sharded modules)."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - torch without FSDP2
        return False
    return any(isinstance(m, FSDPModule) for m in model.modules())


def rank_cuda_ordinal(info: DistInfo) -> int | None:
    """This rank's CUDA device ordinal (the one `device_for` uses), None without CUDA."""
    return info.local_rank if torch.cuda.is_available() else None


def sampling_rounds(sample: Callable[[int, int], int], need: int, max_rounds: int, info: DistInfo, *,
                    every_rank_samples: bool) -> tuple[int, int]:
    """Dynamic sampling: rounds until every rank holds `need` groups, or `max_rounds`.

    `sample(round, missing)` runs one round on this rank and returns how many groups it kept
    (at most `missing`, which is 0 on a rank that has enough). Every rank runs the same rounds:
    the stop decision is the all-reduced minimum of the kept counts. With `every_rank_samples`
    (a collective rollout forward), a rank that has enough still samples in every round the
    others need; otherwise it skips those rounds. Returns (groups kept here, rounds run)."""
    kept = rounds = 0
    for rnd in range(max_rounds):
        if kept < need or every_rank_samples:
            kept += sample(rnd, max(need - kept, 0))
        rounds += 1
        if all_reduce_min(kept, info) >= need:
            break
    return kept, rounds


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def parallelize(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """FSDP2 from outside the model: each decoder layer and each vision block is its own unit,
    then the root. A no-op for a single process."""
    if not info.enabled:
        return model
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = None
    if torch.cuda.is_available():
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    kwargs = {"mp_policy": mp} if mp is not None else {}
    for layer in model.language_model.model.layers:
        fully_shard(layer, **kwargs)
    for tower in (model.vision_backbone.featurizer, model.vision_backbone.fused_featurizer):
        for block in tower.blocks:
            if any(p.requires_grad for p in block.parameters()):  # the last block is never run
                fully_shard(block, **kwargs)
    fully_shard(model, **kwargs)
    return model


def full_state_dict(model: torch.nn.Module, info: DistInfo) -> dict[str, torch.Tensor]:
    """Unsharded CPU copy of the parameters and buffers (every rank gets it)."""
    if not info.enabled:
        return {k: v.detach().clone() for k, v in model.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    # cpu_offload=True would leave the values on rank 0 only; every rank needs them here.
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=False))
    return {k: v.detach().cpu() for k, v in state.items()}


def sync_rollout_policy(train_model: torch.nn.Module, rollout_model: torch.nn.Module, info: DistInfo) -> None:
    """Copies the (sharded) training weights into the unsharded rollout replica."""
    if rollout_model is train_model:
        return
    rollout_model.load_state_dict(full_state_dict(train_model, info))
