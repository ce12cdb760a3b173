"""`vlarl-fast train | eval | bench`.

    vlarl-fast train                                  built-in tasks: one-demo SFT, then GRPO, then eval
    vlarl-fast train --recipe builtin_cpu grpo.iterations=40 grpo.lr=1e-4
    vlarl-fast train --recipe libero_spatial policy.init=<openvla-oft dir>   SimpleVLA-RL's LIBERO recipe
    vlarl-fast train --suite libero_10 policy.init=<dir>                     (the suite's recipe)
    torchrun --nproc-per-node 2 -m vlarl_fast.cli train run.out_dir=runs/ddp
    vlarl-fast eval --checkpoint runs/builtin --episodes 50 --videos 4
    vlarl-fast eval --suite libero_spatial --checkpoint <openvla-oft dir> [--episodes 10] [--tasks 0 3]
    vlarl-fast bench [engine|control|render|kernels|policy|libero|grpo|rollout_pipeline] [--smoke] [--suite libero_spatial]

Overrides are `section.field=value` (see vlarl_fast/recipes/config.py). Errors are one line
(exit code 2 for bad usage or configuration); `--debug` or VLARL_DEBUG=1 shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import sys
from pathlib import Path

BENCHMARKS = ("engine", "control", "render", "kernels", "policy", "libero", "grpo", "rollout_pipeline")
REPO_ROOT = Path(__file__).resolve().parent.parent


class UsageError(ValueError):
    """A bad command line or configuration value (exit code 2)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a usage error reported on one line (and exit code 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _recipe_for(args) -> str:
    """--recipe, else the suite's own recipe (libero_*), else the built-in default."""
    if args.recipe:
        return args.recipe
    suite = getattr(args, "suite", None)
    if suite and suite != "builtin":
        from vlarl_fast.recipes.config import RECIPE_DIR

        if not (RECIPE_DIR / f"{suite}.yaml").is_file():
            raise UsageError(f"--suite {suite}: no recipe of that name; expected builtin or one of "
                             f"{sorted(p.stem for p in RECIPE_DIR.glob('libero_*.yaml'))}")
        return suite
    return "builtin_cpu"


def _suite_overrides(args) -> list[str]:
    suite = getattr(args, "suite", None)
    return [f"env.suite={suite}"] if suite and args.recipe else []


def _train(args) -> int:
    from vlarl_fast.recipes import load_config
    from vlarl_fast.rl.trainer import train

    cfg = load_config(_recipe_for(args), _suite_overrides(args) + args.overrides)
    result = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        for record in result.get("history", []):
            print(f"{record['label']:>5} (step {record['step']}): success {record['success']:.3f} "
                  f"on {record['episodes']} held-out episodes")
        if "wall_s" in result:
            print(f"done in {result['wall_s']:.0f} s; logs and checkpoints in {cfg.run.out_dir}")
    return 0


def _demos(args) -> int:
    """Scripted-expert demos of LIBERO tasks in LIBERO's dataset layout, and the expert's success."""
    from vlarl_fast.envs.libero.demos import demo_path, record_demo_files
    from vlarl_fast.envs.libero.expert_runs import run_expert
    from vlarl_fast.envs.libero.scene import LiberoScene
    from vlarl_fast.envs.libero.suite import select_tasks

    if args.suite == "builtin":
        raise UsageError("demos: --suite must be a LIBERO suite (libero_*)")
    tasks = select_tasks(args.suite, args.tasks or [])
    scenes = {}
    if args.success_over:
        for task in tasks:
            scenes[(task.suite, task.index)] = scene = LiberoScene(task)
            r = run_expert(scene, range(args.success_over), num_threads=args.threads)
            print(f"{task.suite} {task.index} {task.name}: expert success {int(r['success'].sum())}/"
                  f"{args.success_over}")
    record_demo_files(tasks, scenes, init_ids=args.init_ids, out_dir=args.out, image_size=args.image_size,
                      fast_render=args.fast_render, num_threads=args.threads, overwrite=True, log=print,
                      cameras=["agentview", "robot0_eye_in_hand"] if args.wrist else ["agentview"])
    for task in tasks:
        print(demo_path(args.out, task))
    return 0


def _resolve_policy_dir(path: Path) -> Path:
    """An official policy dir, or a training checkpoint dir (its policy/ and sharded state/)."""
    if (path / "config.json").is_file():
        return path
    if path.name == "latest" and path.is_file():
        path = path.parent / path.read_text().strip()
    if (path / "state" / ".metadata").is_file() and (path / "policy" / "config.json").is_file():
        return path
    if (path / "policy" / "config.json").is_file():
        return path / "policy"
    if (path / "checkpoints" / "latest").is_file():
        return _resolve_policy_dir(path / "checkpoints" / "latest")
    raise FileNotFoundError(f"--checkpoint {path}: no policy config.json there, in policy/, or via checkpoints/latest")


def _eval(args) -> int:
    from vlarl_fast.recipes import load_config
    from vlarl_fast.rl.eval_job import run_eval
    from vlarl_fast.rl.evaluate import markdown_table

    checkpoint = args.checkpoint or args.policy
    if checkpoint is None and not args.untrained:
        raise UsageError("eval: --checkpoint DIR is required (or --untrained to score the untrained "
                         "built-in policy on purpose)")
    if checkpoint is not None and args.untrained:
        raise UsageError("eval: --untrained and --checkpoint exclude each other")
    overrides = _suite_overrides(args)
    policy_dir = None
    if checkpoint is not None:
        policy_dir = _resolve_policy_dir(Path(checkpoint))
        if args.suite not in (None, "builtin"):
            overrides += ["policy.preset=checkpoint", f"policy.init={policy_dir}"]
    elif args.suite not in (None, "builtin"):
        raise UsageError(f"eval --suite {args.suite}: --untrained applies to the built-in tasks only")
    if args.tasks:
        overrides.append(f"env.tasks=[{','.join(args.tasks)}]")
    cfg = load_config(_recipe_for(args), overrides + args.overrides)
    result = run_eval(cfg, policy_dir, episodes_per_task=args.episodes, videos=args.videos,
                      video_dir=args.video_dir, out_dir=args.out_dir)
    print(markdown_table(result["table"]))
    print(f"success {result['success']:.3f} on {result['episodes']} held-out episodes")
    for path in result["result_files"] + result.get("video_paths", []):
        print(f"  wrote {path}")
    return 0


def _export(args) -> int:
    from vlarl_fast.rl.checkpoint import export_pretrained, latest_checkpoint

    path = Path(args.checkpoint)
    if path.name == "latest" and path.is_file():
        path = path.parent / path.read_text().strip()
    if not (path / "state").is_dir() and (path / "checkpoints").is_dir():
        found = latest_checkpoint(path, log=lambda message: print(message, file=sys.stderr))
        if found is None:
            raise FileNotFoundError(f"export: {path} holds no complete checkpoint")
        path = found
    if not (path / "state").is_dir():
        raise FileNotFoundError(f"export: {path} is not a training checkpoint (no state/ there) nor a run dir")
    dtype = {"bfloat16": torch_dtype("bfloat16"), "float32": torch_dtype("float32")}[args.dtype]
    out = export_pretrained(path, args.out_dir, dtype=dtype)
    print(f"exported {path} to {out} (official OpenVLA-OFT layout, {args.dtype})")
    return 0


def torch_dtype(name: str):
    import torch

    return getattr(torch, name)


def load_benchmark(name: str):
    """A benchmark's `run(smoke, ...) -> str`, from the repository's benchmarks/ folder."""
    if name not in BENCHMARKS:
        raise UsageError(f"bench: unknown benchmark {name!r}; expected one of {BENCHMARKS}")
    path = REPO_ROOT / "benchmarks" / f"bench_{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"bench {name}: {path} not found (benchmarks live in the repository checkout)")
    spec = importlib.util.spec_from_file_location(f"vlarl_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    if not hasattr(module, "run"):
        raise FileNotFoundError(f"bench {name}: {path} has no run(smoke) function")
    return module.run


def _bench(args) -> int:
    run = load_benchmark(args.name)
    kwargs = {"smoke": args.smoke}
    if args.suite is not None:
        if "suite" not in inspect.signature(run).parameters:
            raise UsageError(f"bench {args.name}: --suite applies to `bench grpo` only")
        kwargs["suite"] = args.suite
    print(run(**kwargs))
    return 0


def _int_at_least(minimum: int, what: str):
    """An argparse type: an integer >= `minimum`, else a one-line error saying what was expected."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value
    return parse


_positive = _int_at_least(1, "a positive integer")
_non_negative = _int_at_least(0, "an integer >= 0")


def _suite_name(text: str) -> str:
    from vlarl_fast.envs.suites import SUITE_NAMES

    if text not in SUITE_NAMES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(SUITE_NAMES)}, got {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="vlarl-fast", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    p = sub.add_parser("train", help="SFT + GRPO on the built-in tasks (default), or GRPO on a LIBERO suite")
    p.add_argument("--recipe", default=None, help="recipe name in vlarl_fast/recipes or a YAML path "
                   "(default: the --suite's recipe, else builtin_cpu)")
    p.add_argument("--suite", type=_suite_name, default=None, help="builtin or libero_*: the suite's recipe "
                   "(with --recipe: env.suite of that recipe)")
    p.add_argument("overrides", nargs="*", help="section.field=value")
    p.set_defaults(func=_train)
    p = sub.add_parser("eval", help="success rate on the suite's evaluation set, with a table and mp4 videos")
    p.add_argument("--suite", type=_suite_name, default=None, help="builtin (default) or libero_*")
    p.add_argument("--checkpoint", default=None, help="policy dir (official OpenVLA-OFT layout), a checkpoint "
                   "dir, or a run dir")
    p.add_argument("--policy", default=None, help="same as --checkpoint")
    p.add_argument("--untrained", action="store_true", help="score the untrained built-in policy")
    p.add_argument("--recipe", default=None, help="default: the suite's recipe, else builtin_cpu")
    p.add_argument("--episodes", "--num-init-states", dest="episodes", type=_positive, default=None,
                   help="episodes (init states) per task; default: the recipe's eval.episodes_per_task")
    p.add_argument("--tasks", nargs="+", default=None, help="task names, or LIBERO task indices")
    p.add_argument("--videos", type=_non_negative, default=0, help="mp4 videos to write")
    p.add_argument("--video-dir", default=None)
    p.add_argument("--out-dir", default=None, help="where the results JSON/Markdown go (default run.out_dir/eval)")
    p.add_argument("overrides", nargs="*", help="section.field=value")
    p.set_defaults(func=_eval)
    p = sub.add_parser("export", help="a training checkpoint's policy in the official OpenVLA-OFT HF layout")
    p.add_argument("checkpoint", help="a checkpoint dir (checkpoints/step_N), checkpoints/latest, or a run dir")
    p.add_argument("out_dir", help="where to write config.json, safetensors, statistics and tokenizer")
    p.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16",
                   help="tensor dtype of the release (default bfloat16, as the official checkpoints)")
    p.set_defaults(func=_export)
    p = sub.add_parser("demos", help="scripted-expert demos of LIBERO tasks, in LIBERO's dataset layout (HDF5)")
    p.add_argument("--suite", type=_suite_name, required=True, help="a LIBERO suite (libero_*)")
    p.add_argument("--tasks", nargs="+", default=None, help="task indices or names (default: all)")
    p.add_argument("--init-ids", nargs="+", type=int, default=[0], help="init states the demos start from")
    p.add_argument("--out", required=True, help="folder for <task name>_demo.hdf5 files")
    p.add_argument("--image-size", type=_positive, default=128, help="agentview frame side (LIBERO's: 128)")
    p.add_argument("--fast-render", action="store_true", help="no MSAA, shadows, reflections")
    p.add_argument("--wrist", action="store_true",
                   help="also record the wrist camera (obs/eye_in_hand_rgb, as LIBERO's datasets hold it)")
    p.add_argument("--threads", type=_positive, default=2)
    p.add_argument("--success-over", type=_non_negative, default=0,
                   help="first measure the expert's success over init states 0..N-1 of each task")
    p.set_defaults(func=_demos)
    p = sub.add_parser("bench", help="benchmarks (default: engine)")
    p.add_argument("name", nargs="?", default="engine", choices=BENCHMARKS)
    p.add_argument("--smoke", action="store_true", help="a few-second version")
    p.add_argument("--suite", type=_suite_name, default=None, help="bench grpo: the task suite")
    p.set_defaults(func=_bench)
    return parser


def _quiet_robosuite_macro_notice() -> None:
    """robosuite prints three lines about a missing private macro file at every import; they say
    nothing about this run (its defaults are what LIBERO uses), so the CLI drops just those."""
    import logging

    class _DropMacroNotice(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            text = record.getMessage()
            return not ("macro file" in text or "setup_macros.py" in text)

    logging.getLogger("robosuite_logs").addFilter(_DropMacroNotice())


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")  # offscreen rendering without a display
    _quiet_robosuite_macro_notice()
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("VLARL_DEBUG", "") not in ("", "0")
    try:
        if getattr(args, "policy", None) and getattr(args, "checkpoint", None):
            raise UsageError("eval: --policy and --checkpoint name the same thing; give one")
        return args.func(args)
    except KeyboardInterrupt:
        print("vlarl-fast: interrupted", file=sys.stderr)
        return 130
    except (UsageError, ValueError, TypeError, KeyError, IndexError, FileNotFoundError, RuntimeError,
            OSError, ImportError) as exc:  # ImportError: LiberoNotFoundError says what to install
        if debug:
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        message = " ".join(str(message).split()) or type(exc).__name__
        print(f"vlarl-fast {args.command}: error: {message} (--debug for the traceback)", file=sys.stderr)
        return 2 if isinstance(exc, (UsageError, ValueError, FileNotFoundError, ImportError)) else 1


if __name__ == "__main__":
    sys.exit(main())
