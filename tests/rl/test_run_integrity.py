"""A run's history is never lost: a dangling `latest` resumes from the newest complete checkpoint
(and says so), metrics.jsonl is only appended to, re-running a finished run adds nothing, and
run.resume=false refuses to overwrite an existing run."""

from __future__ import annotations

import subprocess

from _runs import REPO, env, run_train, train_cmd


def _lines(out_dir):
    return (out_dir / "metrics.jsonl").read_text().splitlines()


def test_dangling_latest_resumes_from_newest_complete_and_keeps_history(tmp_path):
    run_train(tmp_path, "grpo.iterations=2", "run.checkpoint_every=1", "eval.episodes_per_task=2")
    before = _lines(tmp_path)
    (tmp_path / "checkpoints" / "latest").write_text("step_000099")
    proc = subprocess.run(train_cmd(tmp_path, "grpo.iterations=3", "run.checkpoint_every=1",
                                    "eval.episodes_per_task=2"),
                          cwd=REPO, env=env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "newest complete checkpoint" in proc.stdout + proc.stderr and "step_000002" in proc.stdout + proc.stderr
    after = _lines(tmp_path)
    assert after[: len(before)] == before  # appended, never rewritten
    assert '"step": 3' in after[-1] or any('"kind": "train", "step": 3' in l for l in after[len(before):])
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step_000003"

    # a finished run, run again: nothing to do, nothing appended
    done = _lines(tmp_path)
    proc = subprocess.run(train_cmd(tmp_path, "grpo.iterations=3", "run.checkpoint_every=1",
                                    "eval.episodes_per_task=2"),
                          cwd=REPO, env=env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _lines(tmp_path) == done

    # run.resume=false on an existing run: a one-line usage error, nothing touched
    proc = subprocess.run(train_cmd(tmp_path, "run.resume=false"), cwd=REPO, env=env(), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 2 and "run.resume" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert _lines(tmp_path) == done
