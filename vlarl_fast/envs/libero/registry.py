"""LIBERO's suites and tasks, read from the user's LIBERO install (benchmark registry, BDDL files,
init states, language)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from vlarl_fast.envs.libero.config import import_libero

SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90")

# Maximum policy steps per episode, as OpenVLA-OFT's LIBERO evaluation uses them
# (experiments/robot/libero/run_libero_eval.py: TASK_MAX_STEPS). SimpleVLA-RL uses 512 for all.
MAX_EPISODE_STEPS = {
    "libero_spatial": 220,
    "libero_object": 280,
    "libero_goal": 300,
    "libero_10": 520,
    "libero_90": 400,
}
# No-op steps at the start of an episode while objects settle (OpenVLA-OFT / SimpleVLA-RL:
# num_steps_wait = 10), with the no-op action below (gripper open).
SETTLE_STEPS = 10
NOOP_ACTION = np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float64)


@dataclass(frozen=True)
class LiberoTask:
    """One task of a suite: where its BDDL problem and init states are, and its instruction."""

    suite: str
    index: int  # position in the suite (LIBERO's task order 0)
    name: str
    language: str
    bddl_file: str  # absolute path
    init_states_file: str  # absolute path

    @property
    def instruction(self) -> str:
        return self.language

    @property
    def max_steps(self) -> int:
        return MAX_EPISODE_STEPS[self.suite]

    def init_states(self) -> np.ndarray:
        """[num_init_states, state_dim] float64: LIBERO's fixed initial states
        (robosuite flattened sim states: time, qpos, qvel)."""
        return _init_states(self.suite, self.index)


def _check_suite(suite: str) -> None:
    if suite not in SUITES:
        raise ValueError(f"unknown LIBERO suite {suite!r}; known suites: {', '.join(SUITES)}")


@lru_cache(maxsize=None)
def _benchmark(suite: str):
    _check_suite(suite)
    import_libero()
    from libero.libero import benchmark

    return benchmark.get_benchmark_dict()[suite]()


def suite_tasks(suite: str) -> list[LiberoTask]:
    """All tasks of a suite, in LIBERO's order."""
    bench = _benchmark(suite)
    tasks = []
    for i in range(bench.get_num_tasks()):
        t = bench.get_task(i)
        bddl = bench.get_task_bddl_file_path(i)
        from libero.libero import get_libero_path

        init_file = os.path.join(get_libero_path("init_states"), t.problem_folder,
                                 t.init_states_file)
        tasks.append(LiberoTask(suite, i, t.name, t.language, os.path.abspath(bddl),
                                os.path.abspath(init_file)))
    for t in tasks:
        for path in (t.bddl_file, t.init_states_file):
            if not os.path.isfile(path):
                from vlarl_fast.envs.libero.config import LiberoNotFoundError, config_file

                raise LiberoNotFoundError(
                    f"LIBERO file {path} (task {t.name} of {suite}) does not exist; check the "
                    f"'bddl_files' / 'init_states' keys of {config_file()}.")
    return tasks


def get_task(suite: str, index: int) -> LiberoTask:
    tasks = suite_tasks(suite)
    if not 0 <= index < len(tasks):
        raise IndexError(f"{suite} has {len(tasks)} tasks; index {index} is out of range")
    return tasks[index]


@lru_cache(maxsize=None)
def _init_states(suite: str, index: int) -> np.ndarray:
    states = _benchmark(suite).get_task_init_states(index)
    states = np.asarray(states, dtype=np.float64)
    states.setflags(write=False)
    return states
