"""Old log-probs, 2 gloo ranks: the rollout replica's log-probs equal the (FSDP2-sharded) training
model's, before and after an update and its weight sync: bit for bit on the same micro-batches, to
1e-5 against the log-probs the rollout itself recorded (other batch sizes and padding); the trainer
recomputes them with the training model (SimpleVLA-RL's order), so the first PPO ratio is 1."""

from __future__ import annotations

import os
import socket

import numpy as np
import torch
import torch.multiprocessing as mp

from vlarl_fast.rl import grpo
from vlarl_fast.rl.distributed import DistInfo, parallelize, sync_rollout_policy
from vlarl_fast.rl.update import UpdateSettings, ppo_update, recompute_old_logprobs

from _helpers import INSTRUCTIONS, sampled_batch, tiny_policy

SETTINGS = UpdateSettings(micro_batch_observations=6, mini_batches=1, ppo_epochs=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_path: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    info = DistInfo(rank=rank, world_size=world, backend="gloo")
    train = parallelize(tiny_policy(0), info, param_dtype=torch.float32)
    replica = tiny_policy(7)  # different weights until synced
    sync_rollout_policy(train, replica, info)
    report = {}
    for phase in ("initial", "after_update"):
        # the rollout: the replica samples tokens and their log-probs, chunk by chunk over all envs
        batch = sampled_batch(replica, seed=10 + rank + (5 if phase == "after_update" else 0))
        recomputed = recompute_old_logprobs(train, batch, INSTRUCTIONS, SETTINGS, info)
        mask = batch.token_mask()
        # the same micro-batches through the replica: bit-identical to the training model
        by_replica = recompute_old_logprobs(replica, batch, INSTRUCTIONS, SETTINGS, info)
        report[phase] = {"max_abs": float(np.abs(recomputed - batch.logp)[mask].max()),
                         "exact": float((recomputed == batch.logp)[mask].mean()), "tokens": int(mask.sum()),
                         "same_inputs_identical": bool(np.array_equal(by_replica, recomputed))}
        if phase == "initial":
            adv = grpo.advantages(batch)
            opt = torch.optim.AdamW([p for p in train.parameters() if p.requires_grad], lr=1e-3)
            batch.logp = recomputed
            metrics = ppo_update(train, opt, batch, adv, INSTRUCTIONS, SETTINGS, info, torch.Generator().manual_seed(0))
            report["first_step_ppo_kl"] = metrics["actor/ppo_kl"]
            report["first_step_clipfrac"] = metrics["actor/clipfrac"]
            sync_rollout_policy(train, replica, info)
    torch.save(report, f"{out_path}.{rank}")
    dist.barrier()
    dist.destroy_process_group()


def test_rollout_logprobs_equal_training_model_logprobs(tmp_path):
    out = str(tmp_path / "report")
    mp.start_processes(_worker, args=(2, _free_port(), out), nprocs=2, join=True, start_method="spawn")
    for rank in range(2):
        r = torch.load(f"{out}.{rank}", weights_only=False)
        print(f"rank {rank}: {r}")
        for phase in ("initial", "after_update"):
            # same inputs: identical; the rollout's own batches (other padding and batch sizes): to 1e-5
            assert r[phase]["same_inputs_identical"], (rank, phase, r[phase])
            assert r[phase]["max_abs"] <= 1e-5, (rank, phase, r[phase])
        # with recomputed old log-probs the first micro-batches see ratio 1 (KL 0 up to float noise)
        assert abs(r["first_step_ppo_kl"]) < 1e-6 and r["first_step_clipfrac"] == 0.0, r
