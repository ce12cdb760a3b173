"""TorchRL collector throughput on LIBERO: `ParallelEnv` of LIBERO processes vs `NativeLiberoEnv`.

The same TorchRL `Collector`, the same fixed-action policy (one 8-action chunk per decision),
one LIBERO task (default libero_spatial task 0), agentview at 256x256, over:

  ParallelEnv of LiberoEnv    the vla_grpo recipe's collector env: N spawned processes, each
                              TransformedEnv(torchrl.envs.LiberoEnv (LIBERO's OffScreenRenderEnv),
                              MultiAction(stack_rewards=False), SuccessReward, StepCounter(64));
                              LIBERO renders its observation cameras (agentview and wrist, as
                              OffScreenRenderEnv does by default) at every control step
  NativeLiberoEnv             TransformedEnv(NativeLiberoEnv(N envs), SuccessReward,
                              StepCounter(64)): every env's chunk through one native call, the
                              policy's camera rendered once per chunk

Throughput: chunks (policy decisions) per second summed over envs, timed over collector batches
after a first warm-up batch (which holds the resets). Usage:

    python benchmarks/bench_torchrl_env.py [--smoke] [--envs 8 16] [--decisions 4] [--size 256]

Needs LIBERO's assets: $VLARL_LIBERO_ASSETS (default <repo>/../shared/libero_assets when it
exists) or a LIBERO config with them (docs/libero.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "benchmarks") not in sys.path:
    sys.path.insert(0, str(REPO / "benchmarks"))
from libero_setup import libero_defaults  # noqa: E402

libero_defaults()

CHUNK = 8
MAX_DECISIONS = 64  # the recipe's max_outer_steps (512 env steps / chunk 8)


def _cpu() -> str:
    name, flags = platform.processor() or "unknown CPU", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    flags = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")
                             if f in have]
                    break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} CPUs; {' '.join(flags) or 'no AVX2'})"


# ---------------------------------------------------------------------- the two envs
def _libero_worker(suite: str, task: int, size: int):
    """One recipe worker: LIBERO's env in TorchRL's LiberoEnv, a chunk per outer step."""
    warnings.filterwarnings("ignore")
    from torchrl.envs import Compose, LiberoEnv, MultiAction, StepCounter, SuccessReward, TransformedEnv

    from vlarl_fast.envs.libero.config import import_libero

    import_libero()  # LIBERO's config and assets, as for every LIBERO user of this repo
    base = LiberoEnv(suite, task_id=task, camera_height=size, camera_width=size,
                     max_episode_steps=MAX_DECISIONS * CHUNK, init_state_mode="cycle")
    return TransformedEnv(base, Compose(MultiAction(stack_rewards=False), SuccessReward(),
                                        StepCounter(max_steps=MAX_DECISIONS)))


def make_parallel_env(suite: str, task: int, num_envs: int, size: int):
    from torchrl.envs import ParallelEnv

    return ParallelEnv(num_envs, partial(_libero_worker, suite, task, size),
                       mp_start_method="spawn", metadata_from_workers=True, use_buffers=False,
                       device="cpu")


def make_native_env(suite: str, task: int, num_envs: int, size: int, threads: int | None = None):
    from torchrl.envs import Compose, StepCounter, SuccessReward, TransformedEnv

    from vlarl_fast.compat.torchrl_env import NativeLiberoEnv

    base = NativeLiberoEnv(suite, [task] * num_envs, chunk_size=CHUNK, camera_height=size,
                           camera_width=size, max_episode_steps=MAX_DECISIONS * CHUNK,
                           init_state_mode="cycle", num_threads=threads)
    return TransformedEnv(base, Compose(SuccessReward(), StepCounter(max_steps=MAX_DECISIONS)))


def _policy(chunk: int):
    """A fixed-action policy: the same small random chunk (gripper open) for every env."""
    import torch
    from tensordict.nn import TensorDictModule

    gen = torch.Generator().manual_seed(0)
    actions = 0.3 * (2 * torch.rand(chunk, 7, generator=gen) - 1)
    actions[:, 6] = -1.0

    class Fixed(torch.nn.Module):
        def forward(self, state):
            return actions.expand(state.shape[0], chunk, 7).clone()

    return TensorDictModule(Fixed(), in_keys=[("observation", "state")], out_keys=["action"])


def _schema(env) -> dict:
    spec = env.observation_spec
    return {k: (tuple(spec[k].shape[1:]), spec[k].dtype)
            for k in spec.keys(True, True) if k != "language_instruction"}


def time_collector(env, num_envs: int, decisions: int, batches: int) -> tuple[float, int]:
    """(seconds, decisions) over `batches` collector batches after a warm-up batch."""
    from torchrl.collectors import Collector

    frames = num_envs * decisions
    collector = Collector(env, _policy(CHUNK), frames_per_batch=frames,
                          total_frames=frames * (batches + 1))
    try:
        it = iter(collector)
        next(it)  # warm-up: resets, first renders
        t0 = time.perf_counter()
        for _ in range(batches):
            data = next(it)
            assert data["action"].shape[-2:] == (CHUNK, 7)
        return time.perf_counter() - t0, frames * batches
    finally:
        collector.shutdown()


# ---------------------------------------------------------------------- the run
def run(smoke: bool = False, suite: str = "libero_spatial", task: int = 0, envs=(8, 16),
        decisions: int = 4, batches: int = 1, size: int = 256) -> str:
    warnings.filterwarnings("ignore")
    if smoke:
        envs, decisions, batches, size = (2,), 1, 1, 64
    lines = [f"TorchRL collector on LIBERO {suite} task {task}: {CHUNK}-action chunks, agentview "
             f"{size}x{size}, {decisions} decisions per env per batch, {batches} timed batch(es)",
             f"CPU: {_cpu()}; python {platform.python_version()}",
             f"{'env':<44} {'envs':>4} {'chunks/s':>9} {'s/batch':>8} {'speed-up':>8}"]
    print("\n".join(lines), flush=True)
    for n in envs:
        row = {}
        for name, make in (("ParallelEnv of LiberoEnv processes", make_parallel_env),
                           ("NativeLiberoEnv", make_native_env)):
            t_build = time.perf_counter()
            env = make(suite, task, n, size)
            schema = _schema(env)
            build = time.perf_counter() - t_build
            try:
                sec, count = time_collector(env, n, decisions, batches)
            finally:
                env.close(raise_if_closed=False)  # the collector may have closed it
            row[name] = (count / sec, schema)
            speed = "" if name.startswith("Parallel") else \
                f"{row[name][0] / row['ParallelEnv of LiberoEnv processes'][0]:7.1f}x"
            line = (f"{name:<44} {n:>4} {count / sec:>9.2f} {sec / batches:>8.1f} {speed:>8}"
                    f"   (built in {build:.0f} s)")
            lines.append(line)
            print(line, flush=True)
        base, native = (row[k][1] for k in row)
        diff = {k: (base.get(k), native.get(k)) for k in base if base.get(k) != native.get(k)}
        line = ("schema: the native env's observation keys, shapes and dtypes cover the "
                "ParallelEnv's" if not diff else f"schema differs: {diff}")
        if n == envs[0]:
            lines.append(line)
            print(line, flush=True)
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="2 envs, 64x64, one decision: a quick check")
    p.add_argument("--suite", default="libero_spatial")
    p.add_argument("--task", type=int, default=0)
    p.add_argument("--envs", type=int, nargs="+", default=[8, 16])
    p.add_argument("--decisions", type=int, default=4, help="decisions per env per batch")
    p.add_argument("--batches", type=int, default=1, help="timed batches after the warm-up")
    p.add_argument("--size", type=int, default=256)
    a = p.parse_args(argv)
    run(a.smoke, a.suite, a.task, tuple(a.envs), a.decisions, a.batches, a.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
