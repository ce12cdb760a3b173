"""Sharded checkpoints, 2 gloo ranks: each rank writes its shard (torch.distributed.checkpoint),
2 fresh ranks resume from the shards and reproduce the next update exactly (metrics and
parameters, tolerance 0), and the export to the official HF layout is read back bit for bit by
`load_pretrained`."""

from __future__ import annotations

import os
import socket

import numpy as np
import torch
import torch.multiprocessing as mp

from vlarl_fast.policy import load_pretrained
from vlarl_fast.rl import checkpoint, grpo
from vlarl_fast.rl.distributed import DistInfo, full_state_dict, parallelize
from vlarl_fast.rl.update import UpdateSettings, ppo_update

from _helpers import INSTRUCTIONS, sampled_batch, tiny_policy

SETTINGS = UpdateSettings(micro_batch_observations=8, mini_batches=2, ppo_epochs=1)
TIMING = ("time/", "perf/update_tokens_per_s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _update(model, opt, rank, world, seed, info):
    batch = sampled_batch(tiny_policy(0), seed=seed)
    adv = grpo.advantages(batch)  # on the whole batch; each rank then takes its half (whole groups)
    half = len(batch) // world
    sel = np.arange(rank * half, (rank + 1) * half)
    return ppo_update(model, opt, batch.select(sel), adv[sel], INSTRUCTIONS, SETTINGS, info,
                      torch.Generator().manual_seed(seed))


def _worker(rank: int, world: int, port: int, out_dir: str, phase: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    info = DistInfo(rank=rank, world_size=world, backend="gloo")
    model = parallelize(tiny_policy(0 if phase == "write" else 5), info, param_dtype=torch.float32)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.01)
    report = {}
    if phase == "write":
        _update(model, opt, rank, world, 1, info)
        report["saved"] = full_state_dict(model, info)
        checkpoint.save_checkpoint(out_dir, 1, model, opt, info, policy_template=tiny_policy(0),
                                   extra={"history": []})
    else:
        found = checkpoint.latest_checkpoint(out_dir)
        report["step"] = checkpoint.restore(found, model, opt, info)["step"]
    report["metrics"] = _update(model, opt, rank, world, 2, info)  # the next update
    report["state"] = full_state_dict(model, info)
    torch.save(report, os.path.join(out_dir, f"{phase}.{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


def _comparable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith(TIMING)}


def test_two_ranks_write_shards_resume_exactly_and_export(tmp_path):
    for phase in ("write", "resume"):
        mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path), phase), nprocs=2, join=True,
                           start_method="spawn")
    step_dir = tmp_path / "checkpoints" / "step_000001"
    shards = sorted(p.name for p in (step_dir / "state").glob("*.distcp"))
    assert shards == ["__0_0.distcp", "__1_0.distcp"], shards  # one shard per rank
    assert checkpoint.verify_checkpoint(step_dir) is None
    written = torch.load(tmp_path / "write.0.pt", weights_only=False)
    for rank in range(2):
        resumed = torch.load(tmp_path / f"resume.{rank}.pt", weights_only=False)
        assert resumed["step"] == 1
        assert _comparable(resumed["metrics"]) == _comparable(written["metrics"]), rank
        for name, value in written["state"].items():
            assert torch.equal(resumed["state"][name], value), name

    for dtype in (torch.float32, torch.bfloat16):
        out = checkpoint.export_pretrained(step_dir, tmp_path / f"export_{dtype}", dtype=dtype)
        assert (out / "config.json").is_file() and list(out.glob("model*.safetensors"))
        loaded = load_pretrained(out, dtype=dtype).state_dict()
        assert sorted(loaded) == sorted(written["saved"])
        for name, value in written["saved"].items():
            assert loaded[name].dtype == dtype and torch.equal(loaded[name], value.to(dtype)), name
