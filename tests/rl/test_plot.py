"""The learning-curve plot (`python -m vlarl_fast.rl.plot`) reads a run's metrics.jsonl: one point
per GRPO iteration and per evaluation, a restarted run's repeated step counted once (its last
record), and writes a PNG."""

import json

from vlarl_fast.rl.plot import load, plot_run


def _write(out_dir, records):
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_load_orders_steps_and_keeps_the_last_record_of_a_repeated_step(tmp_path):
    _write(tmp_path, [
        {"kind": "sft", "step": 0, "sft/loss_last": 0.2},
        {"kind": "eval", "step": 0, "success": 0.25, "episodes": 120},
        {"kind": "train", "step": 2, "rollout/success": 0.5, "time/iteration_s": 40.0},
        {"kind": "train", "step": 1, "rollout/success": 0.1, "time/iteration_s": 41.0},
        {"kind": "restart", "step": 1},
        {"kind": "train", "step": 2, "rollout/success": 0.375, "time/iteration_s": 39.0},
        {"kind": "eval", "step": 2, "success": 0.4, "episodes": 120},
    ])
    train, evals = load(tmp_path)
    assert [(r["step"], r["rollout/success"]) for r in train] == [(1, 0.1), (2, 0.375)]
    assert [(e["step"], e["success"]) for e in evals] == [(0, 0.25), (2, 0.4)]


def test_plot_run_writes_a_png(tmp_path):
    _write(tmp_path / "run", [
        {"kind": "eval", "step": 0, "success": 0.25, "episodes": 120},
        *({"kind": "train", "step": i, "rollout/success": 0.1 * i, "time/iteration_s": 40.0} for i in range(1, 4)),
        {"kind": "eval", "step": 3, "success": 0.4, "episodes": 120},
    ])
    path = plot_run(tmp_path / "run", tmp_path / "out" / "curve.png", "2 tasks")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
