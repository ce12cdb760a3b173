"""`vlarl-fast train --recipe libero_spatial` end to end on CPU: a tiny OpenVLA-OFT checkpoint in
the official layout (made here), 2 tasks x 2 init states x 4 samples, 2 GRPO iterations, at 1 and 2
gloo ranks; checkpoints, an exact resume from a checkpoint, and rewards equal to LIBERO's own check.

The LIBERO config used by these runs points at a copy of libero_spatial's init states in which
init state 1 of tasks 0 and 1 has the bowl resting on the plate (the goal holds from the first
policy step): a random tiny policy solves nothing by itself, so those episodes are the successes
whose rewards are checked against LIBERO's `_check_success` on the final state.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import solved_state, tiny_checkpoint

REPO = Path(__file__).resolve().parents[2]
TIMING_PREFIXES = ("time/", "perf/")


@pytest.fixture(scope="module")
def crafted(tmp_path_factory, get_scene):
    """(checkpoint dir, LIBERO config dir with the crafted init states)."""
    from vlarl_fast.envs.libero.config import ensure_config
    from vlarl_fast.envs.libero.registry import get_task

    root = tmp_path_factory.mktemp("libero_train")
    paths = ensure_config()
    src = Path(paths["init_states"]) / "libero_spatial"
    if not src.is_dir():  # init states found next to the BDDL files of this LIBERO install
        src = Path(get_task("libero_spatial", 0).init_states_file).parent
    dst = root / "init_states" / "libero_spatial"
    shutil.copytree(src, dst)
    for index in (0, 1):
        task = get_task("libero_spatial", index)
        path = dst / Path(task.init_states_file).name
        states = torch.load(path, weights_only=False)
        states[1] = solved_state(get_scene("libero_spatial", index), states[1])
        torch.save(states, path)
    cfg_dir = root / "libero_config"
    cfg_dir.mkdir()
    (cfg_dir / "config.yaml").write_text(yaml.safe_dump({**paths, "init_states": str(root / "init_states")}))
    return tiny_checkpoint(root / "ckpt"), cfg_dir


def _overrides(ckpt: Path, out_dir: Path, num_envs: int) -> list[str]:
    return ["--recipe", "libero_spatial", f"policy.init={ckpt}", "env.tasks=[0,1]", "grpo.seed_pool=[0,1]",
            "grpo.group_size=4", "grpo.groups_per_iteration=4", f"env.num_envs={num_envs}", "grpo.iterations=2",
            "grpo.max_sample_rounds=1", "grpo.filter_groups=false", "grpo.micro_batch_observations=16", "grpo.lr=1e-3",
            "env.max_chunks=2", "env.image_size=32", "env.num_threads=1", "eval.episodes_per_task=2",
            "eval.every=1", "run.checkpoint_every=1", "run.progress=false", "run.tensorboard=false",
            "run.torch_threads=1", f"run.out_dir={out_dir}"]


def _env(cfg_dir: Path) -> dict:
    env = dict(os.environ, LIBERO_CONFIG_PATH=str(cfg_dir), PYTHONUNBUFFERED="1")
    env.setdefault("MUJOCO_GL", "egl")
    return env


def _train(crafted, out_dir: Path, ranks: int = 1):
    ckpt, cfg_dir = crafted
    if ranks == 1:
        cmd = [sys.executable, "-m", "vlarl_fast.cli", "train", *_overrides(ckpt, out_dir, 16)]
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={ranks}",
               f"--master-port={port}", "-m", "vlarl_fast.cli", "train", *_overrides(ckpt, out_dir, 16 // ranks)]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(cfg_dir), capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _records(out_dir: Path, kind: str) -> dict[int, dict]:
    out = {}
    for line in (out_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["kind"] == kind:
            out[rec["step"]] = rec
    return out


def _comparable(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k not in ("time", "kind") and not k.startswith(TIMING_PREFIXES)}


@pytest.fixture(scope="module")
def reference_run(crafted, tmp_path_factory):
    out = tmp_path_factory.mktemp("libero_ref")
    _train(crafted, out)
    return out


def test_trains_checkpoints_and_rewards_equal_liberos_check(reference_run):
    train = _records(reference_run, "train")
    assert sorted(train) == [1, 2]
    for rec in train.values():
        assert rec["rollout/trajectories"] == 16 and rec["rollout/groups_sampled"] == 4
        # each task: init state 1 solved by construction, init state 0 not: half the episodes
        assert rec["rollout/success"] == 0.5
        assert rec["rollout/reward_mismatch"] == 0  # LIBERO's _check_success on every final state
        assert np.isfinite(rec["actor/pg_loss"]) and "update/skipped" not in rec
    evals = _records(reference_run, "eval")
    assert sorted(evals) == [0, 1, 2] and all(e["success"] == 0.5 and e["episodes"] == 4 for e in evals.values())
    table = json.loads((reference_run / "eval" / "final_step000002" / "libero_spatial_results.json").read_text())
    assert [r["success"] for r in table["tasks"]] == [[False, True], [False, True]]
    for step in (1, 2):
        ckpt = reference_run / "checkpoints" / f"step_{step:06d}"
        assert (ckpt / "policy" / "config.json").is_file() and (ckpt / "trainer_state.pt").is_file()
    assert (reference_run / "checkpoints" / "latest").read_text().strip() == "step_000002"
    # the saved policy (sharded state + policy metadata) loads as an OpenVLA-OFT with the suite's statistics
    from vlarl_fast.rl.checkpoint import load_policy

    policy = load_policy(reference_run / "checkpoints" / "step_000002", dtype=torch.float32)
    assert "libero_spatial_no_noops" in policy.norm_stats


def test_resume_from_a_checkpoint_reproduces_the_next_step(crafted, reference_run, tmp_path):
    """Step 1's checkpoint of the reference run, resumed in a copy of it, redoes step 2 exactly: the
    LIBERO engines, samplers and optimizer come back as they were. (Killing a run at random points,
    and during a save, is tests/rl/test_resume.py's and test_checkpoint_faults.py's job.)"""
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    shutil.rmtree(run / "checkpoints" / "step_000002")
    (run / "checkpoints" / "latest").write_text("step_000001")
    _train(crafted, run)
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_000002"
    ref, resumed = _records(reference_run, "train"), _records(run, "train")
    assert _comparable(resumed[2]) == _comparable(ref[2])
    assert resumed[2]["time"] > ref[2]["time"]  # step 2 was redone, not read back from the copy


def test_two_gloo_ranks(crafted, tmp_path):
    _train(crafted, tmp_path, ranks=2)
    train = _records(tmp_path, "train")
    assert sorted(train) == [1, 2]
    for rec in train.values():
        assert rec["rollout/trajectories"] == 16 and rec["rollout/groups_sampled"] == 4
        assert rec["rollout/reward_mismatch"] == 0
        assert rec["rollout/success"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert (tmp_path / "checkpoints" / "step_000002" / "policy" / "config.json").is_file()
    assert json.loads((tmp_path / "summary.json").read_text())["history"][-1]["label"] == "final"
