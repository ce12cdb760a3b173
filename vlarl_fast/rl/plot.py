"""Learning curve of a run from its metrics.jsonl: held-out eval success (SFT, during and after
GRPO) and the rollout success of every GRPO iteration, against GRPO wall time and iteration.

    python -m vlarl_fast.rl.plot runs/builtin_learn docs/results/builtin_learn.png
    python -m vlarl_fast.rl.plot runs/libero_learn docs/results/libero_learn.png "6 libero_goal tasks"
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load(out_dir: str | Path) -> tuple[list[dict], list[dict]]:
    train, evals = {}, {}
    for line in (Path(out_dir) / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["kind"] == "train":
            train[rec["step"]] = rec
        elif rec["kind"] == "eval":
            evals[rec["step"]] = rec
    return [train[k] for k in sorted(train)], [evals[k] for k in sorted(evals)]


def plot_run(out_dir: str | Path, path: str | Path, label: str = "built-in tasks") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, evals = load(out_dir)
    cumulative, total = [], 0.0
    for rec in train:
        total += rec.get("time/iteration_s", 0.0)
        cumulative.append(total / 60)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["step"] for r in train], [r.get("rollout/success", float("nan")) for r in train], ".-", alpha=0.5,
            label="rollout success (sampled at the GRPO temperature, training states)")
    ax.plot([e["step"] for e in evals], [e["success"] for e in evals], "o-", linewidth=2,
            label=f"held-out eval success (greedy, {int(evals[0]['episodes']) if evals else 0} episodes)")
    ax.set_xlabel("GRPO iteration (0 = after one-demo SFT)")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    if cumulative:
        ax.set_title(f"{label}\n{len(train)} GRPO iterations in {cumulative[-1]:.1f} min (2-core CPU)", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(plot_run(*sys.argv[1:4]))
