"""Checkpoints as a transaction: kills at random points of a save, dangling and corrupt `latest`,
truncated and bit-flipped files, a full disk. Resume always finds a complete checkpoint (verified
against its manifest) or says why there is none, naming the file; nothing is left half-written."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vlarl_fast.rl import checkpoint
from vlarl_fast.rl.distributed import DistInfo
from vlarl_fast.rl.policy_setup import build_policy

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _child(out_dir: Path | str, mode: str, stdin=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HERE / "_save_child.py"), str(out_dir), mode], cwd=REPO,
                            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _assert_loadable(path: Path) -> int:
    assert checkpoint.verify_checkpoint(path) is None
    state = checkpoint.load_trainer_state(path)
    weights = checkpoint.load_policy_weights(path)
    assert weights and all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
    return int(state["step"])


def _stderr_of(server: subprocess.Popen) -> str:
    server.kill()  # it may be waiting for the next trial: reading its stderr would wait forever
    return server.communicate()[1]


def test_sigkill_at_random_points_of_saves_leaves_a_complete_checkpoint(tmp_path):
    rng = random.Random(1234)
    # One interpreter start for all trials: the child forks a saver per trial (see _save_child.py).
    server = _child("-", "fork-server", stdin=subprocess.PIPE)
    try:
        assert server.stdout.readline().strip() == "serving", _stderr_of(server)
        for trial in range(6):
            out = tmp_path / f"run{trial}"
            server.stdin.write(f"{out}\n")
            server.stdin.flush()
            ready = server.stdout.readline().split()
            assert ready[:1] == ["ready"], _stderr_of(server)
            time.sleep(rng.uniform(0.0, 1.5))  # a save of this policy takes ~0.1-0.3 s: kills land mid-save
            os.kill(int(ready[1]), signal.SIGKILL)
            assert server.stdout.readline().strip() == "dead"
            messages = []
            found = checkpoint.latest_checkpoint(out, log=messages.append)
            assert found is not None, messages
            step = _assert_loadable(found)
            assert step >= 1
            # `latest` is the commit point: a kill between a checkpoint's rename and the update of
            # `latest` leaves a complete but uncommitted newer directory, and resume takes `latest`'s
            latest = (out / "checkpoints" / "latest").read_text().strip()
            assert found.name == latest and messages == []
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()


@pytest.fixture
def two_checkpoints(tmp_path):
    policy = build_policy(16, 0)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    for step in (1, 2):
        checkpoint.save_checkpoint(tmp_path, step, policy, opt, DistInfo(), policy_template=policy,
                                   extra={"history": []})
    return tmp_path / "checkpoints"


def _latest(out: Path):
    messages = []
    found = checkpoint.latest_checkpoint(out.parent, log=messages.append)
    return found, " ".join(messages)


def test_a_good_latest_is_used_silently(two_checkpoints):
    found, said = _latest(two_checkpoints)
    assert found == two_checkpoints / "step_000002" and said == ""


@pytest.mark.parametrize("content", ["step_000009", "", "../../etc", b"\xff\xfe\x00garbage"])
def test_dangling_or_corrupt_latest_falls_back_and_says_so(two_checkpoints, content):
    pointer = two_checkpoints / "latest"
    pointer.write_bytes(content if isinstance(content, bytes) else content.encode())
    found, said = _latest(two_checkpoints)
    assert found == two_checkpoints / "step_000002"
    assert str(pointer) in said and "newest complete checkpoint" in said


def test_missing_latest_falls_back(two_checkpoints):
    (two_checkpoints / "latest").unlink()
    found, said = _latest(two_checkpoints)
    assert found == two_checkpoints / "step_000002" and "missing" in said


@pytest.mark.parametrize("target,damage", [("state/__0_0.distcp", "truncate"),
                                           ("state/__0_0.distcp", "flip"),
                                           ("state/.metadata", "delete"),
                                           ("trainer_state.pt", "flip"),
                                           ("policy/config.json", "delete"),
                                           ("manifest.json", "delete")])
def test_damaged_newest_checkpoint_falls_back_naming_the_file(two_checkpoints, target, damage):
    victim = two_checkpoints / "step_000002" / target
    data = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        pos = len(data) // 2
        victim.write_bytes(data[:pos] + bytes([data[pos] ^ 0x10]) + data[pos + 1:])
    else:
        victim.unlink()
    found, said = _latest(two_checkpoints)
    assert found == two_checkpoints / "step_000001"
    assert victim.name in said
    _assert_loadable(found)


def test_nothing_complete_starts_from_scratch_and_says_why(two_checkpoints):
    for step in (1, 2):
        (two_checkpoints / f"step_{step:06d}" / "trainer_state.pt").write_bytes(b"")
    found, said = _latest(two_checkpoints)
    assert found is None and "starting from scratch" in said and "trainer_state.pt" in said


def test_full_disk_fails_the_save_naming_the_file_and_keeps_the_previous_checkpoint(tmp_path):
    proc = _child(tmp_path, "full-disk")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, out + err
    line = next(l for l in out.splitlines() if l.startswith("ERROR"))
    assert "step_000002" in line and str(tmp_path) in line
    root = tmp_path / "checkpoints"
    assert not list(root.glob(".*.tmp"))  # the half-written directory is gone
    assert (root / "latest").read_text().strip() == "step_000001"
    assert _assert_loadable(root / "step_000001") == 1
