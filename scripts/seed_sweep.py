"""Runs `vlarl-fast train` over seeds x ATen CPU capabilities and prints before/after success.

    python scripts/seed_sweep.py --recipe builtin_cpu --seeds 0 1 2 --caps native default avx2 \
        --out /tmp/sweep [-- section.field=value ...]

ATEN_CPU_CAPABILITY (default | avx2 | avx512; "native" leaves it unset) changes which vectorised
kernels torch's CPU ops dispatch to, and so their float rounding: a cheap stand-in for "another
machine". Each run writes <out>/<tag>/summary.json; one JSON line per run goes to <out>/sweep.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import platform
import subprocess
import sys
import time
from pathlib import Path


def cpu_summary() -> str:
    model, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    avx512 = sorted(f for f in flags if f.startswith("avx512"))
    return f"{model}; avx2={'avx2' in flags}; avx512: {','.join(avx512) if avx512 else 'none'}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="builtin_cpu")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--caps", nargs="+", default=["native"])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                    help="directory to run from (a snapshot of the package can be put first on PYTHONPATH)")
    ap.add_argument("--tag", default="")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(cpu_summary(), flush=True)
    for cap in args.caps:
        for seed in args.seeds:
            tag = f"{args.tag}s{seed}_{cap}"
            run_dir = args.out / tag
            env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"), PYTHONUNBUFFERED="1")
            env.pop("ATEN_CPU_CAPABILITY", None)
            if cap != "native":
                env["ATEN_CPU_CAPABILITY"] = cap
            if os.environ.get("SWEEP_PYTHONPATH"):
                env["PYTHONPATH"] = os.environ["SWEEP_PYTHONPATH"]
            cmd = [sys.executable, "-m", "vlarl_fast.cli", "train", "--recipe", args.recipe, *args.overrides,
                   f"run.out_dir={run_dir}", f"run.seed={seed}", "run.resume=false", "run.progress=false",
                   "run.tensorboard=false"]
            t0 = time.perf_counter()
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            proc = subprocess.run(cmd, cwd=args.root, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
            load = os.getloadavg()[1]
            (run_dir / "stdout.txt").parent.mkdir(parents=True, exist_ok=True)
            (run_dir / "stdout.txt").write_text(proc.stdout + proc.stderr)
            rec = {"tag": tag, "seed": seed, "cap": cap, "overrides": args.overrides, "recipe": args.recipe,
                   "rc": proc.returncode, "wall_s": round(wall, 1), "cpu_s": round(cpu_s, 1),
                   "load5": round(load, 2), "cpu": cpu_summary()}
            summary = run_dir / "summary.json"
            if proc.returncode == 0 and summary.is_file():
                hist = json.loads(summary.read_text())["history"]
                rec["history"] = [(h["label"], h["step"], h["success"], h["episodes"]) for h in hist]
                before = next(h for h in hist if h["label"] == "sft")
                after = next(h for h in hist if h["label"] == "final")
                rec.update(before=before["success"], after=after["success"], episodes=after["episodes"],
                           per_task_before=before["per_task"], per_task_after=after["per_task"])
                print(f"{tag:24s} {rec['before']:.3f} -> {rec['after']:.3f} ({rec['after'] - rec['before']:+.3f}) "
                      f"n={rec['episodes']} wall {wall:.0f}s cpu {cpu_s:.0f}s load {load:.1f}", flush=True)
            else:
                print(f"{tag:24s} FAILED rc={proc.returncode} {wall:.0f}s: {(proc.stdout + proc.stderr)[-800:]}",
                      flush=True)
            with open(args.out / "sweep.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
