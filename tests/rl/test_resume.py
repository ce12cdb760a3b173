"""A run killed (SIGKILL) after a checkpoint resumes from it and reproduces the uninterrupted
run's next metrics exactly (all non-timing metrics; tolerance 0); so does a run resumed from the
checkpoint written after SFT (step 0), without redoing SFT."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time

from _runs import REPO, SHARED_RUN, env, run_train, train, train_cmd, train_metrics

TIMING_PREFIXES = ("time/", "perf/")


def _comparable(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k not in ("time", "kind") and not k.startswith(TIMING_PREFIXES)}


def test_killed_run_resumes_and_reproduces(finished_run, tmp_path):
    cut_dir = tmp_path / "killed"
    reference = train_metrics(finished_run)  # the same run, uninterrupted
    assert sorted(reference) == [1, 2, 3]

    proc = subprocess.Popen(train_cmd(cut_dir, *SHARED_RUN), cwd=REPO,
                            env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = cut_dir / "checkpoints" / "latest"
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None:
        if latest.is_file() and latest.read_text().strip() == "step_000002":
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert latest.read_text().strip() in ("step_000002", "step_000003")
    # Resume from step 2 exactly (a kill after step 3's checkpoint would leave nothing to redo).
    latest.write_text("step_000002")

    run_train(cut_dir, *SHARED_RUN)
    resumed = train_metrics(cut_dir)
    for step in (1, 2, 3):
        assert _comparable(resumed[step]) == _comparable(reference[step]), step


def test_resume_from_the_sft_checkpoint_skips_sft_and_reproduces(finished_run, tmp_path):
    reference = train_metrics(finished_run)
    run = tmp_path / "from_sft"
    (run / "checkpoints").mkdir(parents=True)  # a new run directory given the SFT policy only
    shutil.copytree(finished_run / "checkpoints" / "step_000000", run / "checkpoints" / "step_000000")
    (run / "checkpoints" / "latest").write_text("step_000000")

    proc = train(run, *SHARED_RUN)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    kinds = [json.loads(line)["kind"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "sft" not in kinds and kinds.count("train") == 3  # SFT was not redone
    resumed = train_metrics(run)
    for step in (1, 2, 3):
        assert _comparable(resumed[step]) == _comparable(reference[step]), step
