"""A run's history is never lost: a dangling `latest` resumes from the newest complete checkpoint
(and says so) with the policy's statistics as saved, metrics.jsonl is only appended to, re-running
a finished run adds nothing, and run.resume=false refuses to overwrite an existing run."""

from __future__ import annotations

import json
import shutil

from _runs import SHARED_RUN, train

from vlarl_fast.rl.checkpoint import load_statistics, write_manifest


def _lines(out_dir):
    return (out_dir / "metrics.jsonl").read_text().splitlines()


def test_dangling_latest_resumes_from_newest_complete_and_keeps_history(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    shutil.rmtree(run / "checkpoints" / "step_000003")  # step 3 is redone from step 2's checkpoint
    (run / "checkpoints" / "latest").write_text("step_000099")
    # Statistics that no config holds (SFT computes the proprio statistics from the demos) come back
    # from the checkpoint: step 2's, edited (manifest rewritten), must reach step 3's.
    step2 = run / "checkpoints" / "step_000002"
    stats_file = step2 / "policy" / "dataset_statistics.json"
    stats = json.loads(stats_file.read_text())
    for entry in stats.values():
        entry["proprio"] = {"q01": [-0.5, -0.25] * 4, "q99": [0.75, 0.5] * 4}
    stats_file.write_text(json.dumps(stats))
    write_manifest(step2)
    before = _lines(run)
    proc = train(run, *SHARED_RUN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "newest complete checkpoint" in proc.stdout + proc.stderr and "step_000002" in proc.stdout + proc.stderr
    after = _lines(run)
    assert after[: len(before)] == before and len(after) > len(before)  # appended, never rewritten
    assert any('"kind": "train", "step": 3' in l for l in after[len(before):])
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_000003"
    assert load_statistics(run / "checkpoints" / "step_000003") == stats

    # a finished run, run again: nothing to do, nothing appended
    done = _lines(run)
    proc = train(run, *SHARED_RUN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _lines(run) == done

    # run.resume=false on an existing run: a one-line usage error, nothing touched
    proc = train(run, "run.resume=false")
    assert proc.returncode == 2 and "run.resume" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert _lines(run) == done
