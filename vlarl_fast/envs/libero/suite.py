"""A LIBERO suite as a task suite: its tasks (all, or chosen by index or name), prompts as
(task, init state) pairs over LIBERO's fixed init states, and the suite's chunk env.

SimpleVLA-RL (verl/utils/dataset/rob_dataset.py) trains and validates on the same prompts: every
task with init states 0..num_trials_per_task-1 (50) in both its train and valid datasets. That is
the default here; `pool` (grpo.seed_pool) and the evaluation offset hold states out when wanted.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from vlarl_fast.envs.libero.registry import SUITES, LiberoTask, suite_tasks


def select_tasks(suite: str, selectors: Sequence) -> list[LiberoTask]:
    """Tasks of `suite` by index (int or digit string) or by name; empty: all tasks."""
    tasks = suite_tasks(suite)
    if not selectors:
        return tasks
    by_name = {t.name: t for t in tasks}
    out = []
    for sel in selectors:
        text = str(sel).strip()
        if text.lstrip("-").isdigit():
            i = int(text)
            if not 0 <= i < len(tasks):
                raise ValueError(f"config field env.tasks: {suite} has tasks 0..{len(tasks) - 1}, got index {i}")
            out.append(tasks[i])
        elif text in by_name:
            out.append(by_name[text])
        else:
            raise ValueError(f"config field env.tasks: {text!r} is neither a task index (0..{len(tasks) - 1}) "
                             f"nor a task name of {suite}")
    if len({t.index for t in out}) != len(out):
        raise ValueError(f"config field env.tasks: a task is listed twice: {list(selectors)}")
    return out


class LiberoSuite:
    has_demos = True  # the scripted expert (expert.py) records demos for one-demo SFT of the tiny policy

    def __init__(self, suite: str, selectors: Sequence = ()):
        if suite not in SUITES:
            raise ValueError(f"config field env.suite: expected 'builtin' or one of {SUITES}, got {suite!r}")
        self.name = suite
        self.tasks = select_tasks(suite, selectors)
        self.num_init_states = min(len(t.init_states()) for t in self.tasks)

    def _check_ids(self, ids, field: str) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_init_states):
            raise ValueError(f"config field {field}: LIBERO init state ids lie in 0..{self.num_init_states - 1}, "
                             f"got {sorted(set(ids.tolist()))}")
        return ids

    def sample_groups(self, rng: np.random.Generator, groups: int, pool) -> tuple[np.ndarray, np.ndarray]:
        """(task index, init state id) per group: prompts drawn without replacement (with
        replacement only when a round needs more groups than there are prompts)."""
        trials = self._check_ids(pool, "grpo.seed_pool") if len(pool) else np.arange(self.num_init_states)
        n_prompts = len(self.tasks) * trials.size
        pick = rng.choice(n_prompts, size=groups, replace=groups > n_prompts)
        return pick // trials.size, trials[pick % trials.size]

    def init_states(self, task_idx, init_ids) -> list[np.ndarray]:
        """One LIBERO init state per (task, id); a list, since tasks differ in state size."""
        return [self.tasks[t].init_states()[i] for t, i in zip(task_idx, init_ids)]

    def eval_init_ids(self, per_task: int, offset: int) -> np.ndarray:
        return self._check_ids(np.arange(offset, offset + per_task), "eval.episodes_per_task/eval.seed_offset")

    def sft_samples(self, env, cfg, chunk_len: int, out_dir, log=None):
        """One-demo SFT samples from demo files in LIBERO's layout: `cfg.sft.demos`, or recorded
        by the scripted expert from `cfg.sft.init_ids` into `<out_dir>/demos` (rendered as `env`
        renders). Every control step is a sample. Returns (frames, instructions, actions, proprio,
        demos); proprio [N, 8] is the robot state before each sample's first action."""
        from pathlib import Path

        from vlarl_fast.envs.libero.demos import demo_path, record_demo_files, sft_samples

        convention = env._engine_options["image_convention"]
        ids = list(cfg.sft.init_ids[: cfg.sft.demos_per_task])
        if cfg.sft.demos:
            paths = [demo_path(cfg.sft.demos, t) for t in self.tasks]
            missing = [str(p) for p in paths if not p.is_file()]
            if missing:
                raise FileNotFoundError(f"config field sft.demos: no demo file {missing[0]} (expected "
                                        "`<task name>_demo.hdf5` per task; `vlarl-fast demos` writes them)")
        else:
            paths = record_demo_files(self.tasks, env.scenes, init_ids=ids, out_dir=Path(out_dir) / "demos",
                                      image_size=env.height, fast_render=bool(env._engine_options.get("fast")),
                                      image_convention=convention, num_threads=env.num_threads, log=log,
                                      cameras=list(env.cameras))
        frames, instructions, actions, proprio = sft_samples(paths, chunk_len=chunk_len, frame_shape=env.frame_shape(),
                                                             image_convention=convention,
                                                             max_demos=cfg.sft.demos_per_task,
                                                             cameras=list(env.cameras))
        return frames, instructions, actions, proprio, len(paths) * len(ids)

    def unnorm_key(self, norm_stats) -> str:
        """The suite's action statistics key, or `<suite>_no_noops` (as SimpleVLA-RL resolves it)."""
        for key in (self.name, f"{self.name}_no_noops"):
            if key in norm_stats:
                return key
        raise ValueError(f"policy.init: the checkpoint has no action statistics for {self.name} (keys "
                         f"{sorted(norm_stats)}); expected {self.name!r} or '{self.name}_no_noops'")

    def close(self) -> None:
        pass
