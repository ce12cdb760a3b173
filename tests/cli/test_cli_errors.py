"""Every bad command-line value is a one-line error with exit code 2 (a usage error), never a
traceback, a silent fallback or a run on the wrong thing; --debug shows the traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, MUJOCO_GL="egl", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "vlarl_fast.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


CASES = [
    (["eval", "--suite", "nonexistent", "--checkpoint", "x"], "nonexistent"),
    (["eval", "--episodes", "0", "--untrained"], "--episodes"),
    (["eval", "--episodes", "-2", "--untrained"], "--episodes"),
    (["eval", "--episodes", "many", "--untrained"], "--episodes"),
    (["eval", "--videos", "-1", "--untrained"], "--videos"),
    (["eval"], "--checkpoint DIR is required"),
    (["eval", "--checkpoint", "/nonexistent/run"], "/nonexistent/run"),
    (["eval", "--untrained", "--checkpoint", "x"], "exclude each other"),
    (["eval", "--suite", "libero_spatial", "--untrained"], "built-in tasks only"),
    (["train", "--suite", "mars"], "mars"),
    (["train", "--recipe", "no_such_recipe"], "no_such_recipe"),
    (["train", "grpo.lr=-1"], "grpo.lr"),
    (["train", "grpo.nonsense=1"], "grpo.nonsense"),
    (["train", "env.suite=libero_spatial"], "libero_spatial"),  # not silently the built-in tasks
    (["train", "--suite", "libero_spatial"], "policy.init"),
    (["train", "--suite", "libero_spatial", "policy.init=/x", "sft.steps=5"], "sft"),
    (["train", "env.settle_steps=3"], "env.settle_steps"),
    (["train", "env.tasks=[reach_purple]"], "env.tasks"),
    (["bench", "kernels", "--suite", "libero_spatial"], "--suite"),
    (["bench", "warp"], "warp"),
    (["export", "/nonexistent/ckpt", "/tmp/out"], "/nonexistent/ckpt"),
    (["export", "x", "y", "--dtype", "float16"], "--dtype"),
    (["launch"], "launch"),
]


def _in_process(capsys, args) -> tuple[int, str]:
    from vlarl_fast.cli import main

    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("args,named", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_values_are_one_line_usage_errors(capsys, args, named):
    code, err = _in_process(capsys, args)
    lines = [line for line in err.splitlines() if line.strip() and "robosuite" not in line]
    assert code == 2, (code, err[-2000:])
    assert len(lines) == 1, err
    assert "error" in lines[0] and named in lines[0], lines[0]
    assert "Traceback" not in err


def test_a_real_process_prints_one_line_and_exits_2():
    proc = _cli("eval", "--episodes", "0", "--untrained")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_debug_shows_the_traceback():
    proc = _cli("--debug", "train", "grpo.lr=-1")
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "grpo.lr" in proc.stderr
