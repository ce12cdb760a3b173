"""Ranks agree on the decisions that set how many policy forwards they make, so that a rollout
policy whose forward is collective (FSDP2 all-gathers) never leaves a rank waiting alone.

Two gloo ranks with an FSDP2-sharded tiny policy (every forward all-gathers), the real built-in
engine env, and data that make the ranks want different amounts of work: rank 0's episodes end
after 1 chunk, rank 1's after 3 (their episode limits); rank 0 keeps up to 2 groups per round,
rank 1 one (so rank 1 needs 3 dynamic-sampling rounds, rank 0 two). Without the agreement rank 0 would stop
after one forward and rank 1 would wait forever in the next all-gather."""

from __future__ import annotations

import os
import pickle
import socket
import time

import numpy as np
import torch
import torch.multiprocessing as mp

CHUNKS = {0: 1, 1: 3}  # episode length (chunks) per rank
NEED = 3  # groups per rank
GROUP = 2  # trajectories per group


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_path: str) -> None:
    import torch.distributed as dist
    from torch.distributed.fsdp import register_fsdp_forward_method

    from vlarl_fast.envs.builtin.make_env import make_chunk_env
    from vlarl_fast.envs.builtin.suite import BuiltinSuite
    from vlarl_fast.rl.distributed import (DistInfo, make_all_done, parallelize, sampling_rounds,
                                           uses_collectives)
    from vlarl_fast.rl.policy_setup import build_policy
    from vlarl_fast.rl.rollout import rollout

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    info = DistInfo(rank=rank, world_size=world, backend="gloo")
    replica = build_policy(16, 0)
    model = parallelize(build_policy(16, 0), info)
    register_fsdp_forward_method(model, "sample_actions")  # the rollout's forward all-gathers too
    assert uses_collectives(model) and not uses_collectives(replica)
    k = model.config.chunk_len
    suite = BuiltinSuite(["reach_red", "reach_green"])
    env = make_chunk_env("engine", 2 * GROUP, max_steps=CHUNKS[rank] * k, image_size=16, num_threads=1)
    n = 2 * GROUP

    def one_rollout(policy, seed, all_done):
        rng = np.random.default_rng(seed)
        task_idx, init_ids = suite.sample_groups(rng, 2, [])
        states = np.repeat(suite.init_states(task_idx, init_ids), GROUP, axis=0)
        tasks = [suite.tasks[i] for i in np.repeat(task_idx, GROUP)]
        return rollout(policy, env, tasks, states, task_ids=np.repeat(task_idx, GROUP),
                       group_ids=np.repeat(np.arange(2), GROUP), max_chunks=4, temperature=1.6,
                       generator=torch.Generator().manual_seed(seed), all_done=all_done)

    log = {"rollouts": [], "samples": 0}

    def sample(rnd: int, missing: int) -> int:
        log["samples"] += 1
        batch, times = one_rollout(model, 100 * rank + rnd, make_all_done(info))
        log["rollouts"].append({"calls": times.policy_calls, "padding": times.extra["padding_calls"],
                                "length": batch.tokens.shape[1], "done_steps": int(batch.executed.sum()),
                                "tokens": batch.tokens, "logp": batch.logp})
        return min(missing, 2 if rank == 0 else 1) if missing else 0

    kept, rounds = sampling_rounds(sample, NEED, 5, info, every_rank_samples=True)
    log.update(kept=kept, rounds=rounds)
    # the same first rollout by the unsharded replica, alone: padding and agreement change nothing
    ref, _ = one_rollout(replica, 100 * rank, None)
    log["replica_tokens"], log["replica_logp"] = ref.tokens, ref.logp
    # without collectives a rank that has enough skips rounds, but the rounds still agree
    skipped = {"samples": 0}

    def count(rnd: int, missing: int) -> int:
        skipped["samples"] += 1
        return min(missing, 2 if rank == 0 else 1)

    log["plain_kept"], log["plain_rounds"] = sampling_rounds(count, NEED, 5, info, every_rank_samples=False)
    log["plain_samples"] = skipped["samples"]
    logs = [None] * world
    dist.all_gather_object(logs, log)
    if rank == 0:
        with open(out_path, "wb") as f:
            pickle.dump(logs, f)
    env.close()
    dist.barrier()
    dist.destroy_process_group()


def test_ranks_agree_on_rollout_length_and_sampling_rounds(tmp_path):
    out = str(tmp_path / "logs.pkl")
    ctx = mp.start_processes(_worker, args=(2, _free_port(), out), nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + 240
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            raise AssertionError("the ranks did not finish: a rank is waiting in a collective alone")
    with open(out, "rb") as f:
        r0, r1 = pickle.load(f)
    # dynamic sampling: both ranks ran 3 rounds and sampled in each (collective forwards)
    assert r0["rounds"] == r1["rounds"] == 3
    assert r0["samples"] == r1["samples"] == 3
    assert (r0["kept"], r1["kept"]) == (NEED, NEED)
    for a, b in zip(r0["rollouts"], r1["rollouts"]):
        assert a["length"] == 1 and b["length"] > 1  # the ranks wanted different numbers of forwards
        # the same number of forwards on both ranks: rank 0 pads the chunks its envs no longer need
        assert a["calls"] + a["padding"] == b["calls"] + b["padding"] == b["length"]
        assert (a["calls"], a["padding"], b["padding"]) == (1, b["length"] - 1, 0)
        assert a["done_steps"] == 2 * GROUP * 8  # trajectories hold only real chunks
    for r in (r0, r1):
        first = r["rollouts"][0]
        np.testing.assert_array_equal(first["tokens"], r["replica_tokens"])
        np.testing.assert_allclose(first["logp"], r["replica_logp"], atol=1e-5)
    # without collective forwards rank 0 skips the rounds it does not need; the rounds agree
    assert (r0["plain_rounds"], r1["plain_rounds"]) == (3, 3)
    assert (r0["plain_samples"], r1["plain_samples"]) == (2, 3)
    assert (r0["plain_kept"], r1["plain_kept"]) == (NEED, NEED)
