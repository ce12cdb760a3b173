"""`make_suite(name, tasks)`: the task suite a run trains and evaluates on, by name.

    builtin                                       the built-in Panda table tasks (no downloads)
    libero_spatial | libero_object | libero_goal | libero_10 | libero_90   (the user's LIBERO)

A suite gives its `tasks`, `sample_groups(rng, groups, pool)` -> (task index, init id) per
group, `init_states(task_idx, init_ids)`, `eval_init_ids(per_task, offset)`, `unnorm_key`, and
`has_demos`; the chunk env that runs its episodes comes from `make_suite_env`.
"""

from __future__ import annotations

from typing import Sequence

SUITE_NAMES = ("builtin", "libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90")


def is_libero(name: str) -> bool:
    return name.startswith("libero")


def make_suite(name: str, tasks: Sequence = ()):
    if name == "builtin":
        from vlarl_fast.envs.builtin.suite import BuiltinSuite

        return BuiltinSuite(tasks)
    if name in SUITE_NAMES:
        from vlarl_fast.envs.libero.suite import LiberoSuite

        return LiberoSuite(name, tasks)
    raise ValueError(f"config field env.suite: expected one of {SUITE_NAMES}, got {name!r}")


def make_suite_env(suite, num_envs: int, *, max_steps: int, image_size: int, num_threads: int,
                   backend: str = "engine", fast_render: bool = False, cameras: Sequence[str] = (),
                   settle_steps: int | None = None, scenes: dict | None = None):
    """The chunk env for `suite`'s episodes: `num_envs` slots, episodes of `max_steps` control
    steps, square frames of `image_size` from `cameras` (LIBERO; the built-in scene has one)."""
    if suite.name == "builtin":
        from vlarl_fast.envs.builtin.make_env import make_chunk_env

        return make_chunk_env(backend, num_envs, max_steps=max_steps, image_size=image_size,
                              num_threads=num_threads, fast_render=fast_render)
    from vlarl_fast.envs.libero.chunk_env import LiberoChunkEnv
    from vlarl_fast.envs.libero.registry import SETTLE_STEPS

    options = {"fast": True} if fast_render else {}
    return LiberoChunkEnv(num_envs, num_threads, cameras=list(cameras), height=image_size, width=image_size,
                          max_steps=max_steps, scenes=scenes,
                          settle_steps=SETTLE_STEPS if settle_steps is None else settle_steps, **options)
