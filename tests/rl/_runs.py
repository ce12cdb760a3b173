"""Running `vlarl-fast train` as a subprocess with a tiny, fast configuration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

TINY = [
    "env.num_envs=8", "env.max_chunks=2", "env.image_size=32", "policy.image_size=16",
    "sft.steps=20", "sft.lr=3e-3", "grpo.groups_per_iteration=1", "grpo.group_size=8",
    "grpo.max_sample_rounds=1", "grpo.filter_groups=false", "grpo.mini_batches=2", "grpo.micro_batch_observations=8",
    "grpo.lr=1e-3", "eval.episodes_per_task=0", "run.torch_threads=1", "run.progress=false",
    "run.tensorboard=false",
]

# The run that tests/rl/conftest.py's `finished_run` trains once for the tests that share it: three
# GRPO steps, a checkpoint after each, TensorBoard on (the default job's setting).
SHARED_RUN = ("grpo.iterations=3", "run.checkpoint_every=1", "run.tensorboard=true")


def train_cmd(out_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "vlarl_fast.cli", "train", "--recipe", "builtin_cpu", *TINY,
            f"run.out_dir={out_dir}", *overrides]


def env() -> dict:
    e = dict(os.environ)
    e.setdefault("MUJOCO_GL", "egl")
    e["PYTHONUNBUFFERED"] = "1"
    return e


def train(out_dir: Path, *overrides: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """The run's process, finished, with its output; run_train when it must succeed."""
    return subprocess.run(train_cmd(out_dir, *overrides), cwd=REPO, env=env(), capture_output=True, text=True,
                          timeout=timeout)


def run_train(out_dir: Path, *overrides: str, timeout: int = 900) -> None:
    proc = train(out_dir, *overrides, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def train_metrics(out_dir: Path) -> dict[int, dict]:
    """The last record of each GRPO step in metrics.jsonl (a resumed run appends)."""
    out = {}
    for line in (out_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["kind"] == "train":
            out[rec["step"]] = rec
    return out
