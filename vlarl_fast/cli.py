"""`vlarl-fast train | eval | bench`.

    vlarl-fast train                                  built-in tasks: one-demo SFT, then GRPO, then eval
    vlarl-fast train --recipe builtin_cpu grpo.iterations=40 grpo.lr=1e-4
    torchrun --nproc-per-node 2 -m vlarl_fast.cli train run.out_dir=runs/ddp
    vlarl-fast eval --checkpoint runs/builtin/checkpoints/latest --episodes 50 --videos 4
    vlarl-fast eval --suite libero_spatial --policy <openvla-oft dir> [--num-init-states 10 ...]
    vlarl-fast bench [engine|control|render|kernels|policy|libero|grpo] [--smoke]

Overrides are `section.field=value` (see vlarl_fast/recipes/config.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

BENCHMARKS = ("engine", "control", "render", "kernels", "policy", "libero", "grpo")
REPO_ROOT = Path(__file__).resolve().parent.parent


def _train(args) -> int:
    from vlarl_fast.recipes import load_config
    from vlarl_fast.rl.trainer import train

    cfg = load_config(args.recipe, args.overrides)
    result = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        for record in result.get("history", []):
            print(f"{record['label']:>5} (step {record['step']}): success {record['success']:.3f} "
                  f"on {record['episodes']} held-out episodes")
        if "wall_s" in result:
            print(f"done in {result['wall_s']:.0f} s; logs and checkpoints in {cfg.run.out_dir}")
    return 0


def _resolve_policy_dir(path: Path) -> Path:
    if (path / "config.json").is_file():
        return path
    if path.name == "latest" and path.is_file():
        path = path.parent / path.read_text().strip()
    if (path / "policy" / "config.json").is_file():
        return path / "policy"
    if (path / "checkpoints" / "latest").is_file():
        return _resolve_policy_dir(path / "checkpoints" / "latest")
    raise FileNotFoundError(f"--checkpoint {path}: no policy config.json there, in policy/, or via checkpoints/latest")


def _libero_eval(argv: list[str]) -> int:
    """`vlarl-fast eval --suite libero_* --policy CKPT ...`: the LIBERO evaluator's own options
    (vlarl_fast.envs.libero.evaluate.add_eval_arguments)."""
    from vlarl_fast.envs.libero.evaluate import add_eval_arguments, main_eval

    parser = argparse.ArgumentParser(prog="vlarl-fast eval", description="LIBERO suite evaluation")
    add_eval_arguments(parser)
    main_eval(parser.parse_args(argv))
    return 0


def _is_libero_eval(argv: list[str]) -> bool:
    if not argv or argv[0] != "eval":
        return False
    for i, a in enumerate(argv):
        if a == "--suite" and i + 1 < len(argv):
            return argv[i + 1].startswith("libero")
        if a.startswith("--suite="):
            return a.split("=", 1)[1].startswith("libero")
    return False


def _eval(args) -> int:
    from vlarl_fast.recipes import load_config
    from vlarl_fast.rl.eval_job import run_eval

    cfg = load_config(args.recipe, args.overrides)
    policy_dir = _resolve_policy_dir(Path(args.checkpoint)) if args.checkpoint else None
    result = run_eval(cfg, policy_dir, episodes_per_task=args.episodes, videos=args.videos,
                      video_dir=args.video_dir)
    print(f"success {result['success']:.3f} on {result['episodes']} held-out episodes")
    for task, rate in result["per_task"].items():
        print(f"  {task:<16} {rate:.3f}")
    for path in result.get("video_paths", []):
        print(f"  video: {path}")
    return 0


def load_benchmark(name: str):
    """A benchmark's `run(smoke) -> str`, from vlarl_fast/bench/ or the repo's benchmarks/ folder."""
    if name not in BENCHMARKS:
        raise SystemExit(f"bench: unknown benchmark {name!r}; expected one of {BENCHMARKS}")
    path = REPO_ROOT / "benchmarks" / f"bench_{name}.py"
    if not path.is_file():
        raise SystemExit(f"bench {name}: {path} not found (benchmarks live in the repository checkout)")
    spec = importlib.util.spec_from_file_location(f"vlarl_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    if not hasattr(module, "run"):
        raise SystemExit(f"bench {name}: {path} has no run(smoke) function")
    return module.run


def _bench(args) -> int:
    print(load_benchmark(args.name)(smoke=args.smoke))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlarl-fast", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="SFT + GRPO on the built-in tasks (default) or a recipe")
    p.add_argument("--recipe", default="builtin_cpu", help="recipe name in vlarl_fast/recipes or a YAML path")
    p.add_argument("overrides", nargs="*", help="section.field=value")
    p.set_defaults(func=_train)
    p = sub.add_parser("eval", help="success rate on held-out initial states, with mp4 videos")
    p.add_argument("--suite", default="builtin", help="builtin, or libero_* (then the LIBERO evaluator's "
                   "options apply: --policy, --num-init-states, ...)")
    p.add_argument("--checkpoint", default=None, help="policy dir, a checkpoint dir, or a run dir")
    p.add_argument("--recipe", default="builtin_cpu")
    p.add_argument("--episodes", type=int, default=None, help="episodes per task (default: the recipe's)")
    p.add_argument("--videos", type=int, default=0, help="mp4 videos to write")
    p.add_argument("--video-dir", default=None)
    p.add_argument("overrides", nargs="*", help="section.field=value")
    p.set_defaults(func=_eval)
    p = sub.add_parser("bench", help="benchmarks (default: engine)")
    p.add_argument("name", nargs="?", default="engine", choices=BENCHMARKS)
    p.add_argument("--smoke", action="store_true", help="a few-second version")
    p.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")  # offscreen rendering without a display
    argv = sys.argv[1:] if argv is None else list(argv)
    if _is_libero_eval(argv):
        return _libero_eval(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
