"""Expert demonstrations of the built-in tasks, one per (task, seed), in chunk form.

A demo keeps, for every action chunk, the flat MuJoCo state at the chunk's start (so any backend
renders the frame the policy would see) and the K expert actions executed from it. Demos run on
robosuite's own Python stepping; the expert is closed-loop at every control step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlarl_fast.envs.builtin.expert import expert_action
from vlarl_fast.envs.builtin.init_states import states_from_seeds
from vlarl_fast.envs.builtin.scene import BuiltinTableEnv
from vlarl_fast.envs.builtin.tasks import GRIPPER_BODIES, Task


@dataclass
class Demo:
    task: Task
    seed: int
    states: np.ndarray  # [T, S] float64: state at each chunk start
    actions: np.ndarray  # [T, K, 7] float64
    success: bool
    steps: int  # control steps until success (or the limit)


def succeeded(env: BuiltinTableEnv, task: Task) -> bool:
    """The task's success predicate on robosuite's Python state (the engine evaluates it natively)."""
    if task.kind == "reach":
        return reached(env, task)
    return touching(env, task)


def reached(env: BuiltinTableEnv, task: Task) -> bool:
    from vlarl_fast.envs.builtin.tasks import EEF_BODY, REACH_XY, REACH_Z

    model, data = env.sim.model._model, env.sim.data._data
    cube = model.body(task.target_body).id
    eef = data.xpos[model.body(EEF_BODY).id]
    local = data.xmat[cube].reshape(3, 3).T @ (eef - data.xpos[cube])
    return bool(abs(local[0]) <= REACH_XY and abs(local[1]) <= REACH_XY and 0.0 <= local[2] <= REACH_Z)


def touching(env: BuiltinTableEnv, task: Task) -> bool:
    model, data = env.sim.model._model, env.sim.data._data
    target = model.body(task.target_body).id
    gripper = {model.body(n).id for n in GRIPPER_BODIES}
    for c in data.contact[: data.ncon]:
        b1, b2 = model.geom_bodyid[c.geom1], model.geom_bodyid[c.geom2]
        if (b1 == target and b2 in gripper) or (b2 == target and b1 in gripper):
            return True
    return False


def collect_demo(env: BuiltinTableEnv, task: Task, seed: int, *, chunk_len: int, max_chunks: int) -> Demo:
    state0 = states_from_seeds(env, [seed])[0]
    env.reset_to_flat_state(state0)
    states, actions = [], []
    steps, success = 0, False
    for _ in range(max_chunks):
        states.append(env.flat_state())
        chunk = []
        for _ in range(chunk_len):
            a = expert_action(task, env.eef_pos(), env.cube_pos(task.colour))
            chunk.append(a)
            env.step(a)
            if not success:
                steps += 1
                success = succeeded(env, task)
        actions.append(np.stack(chunk))
        if success:
            break
    return Demo(task=task, seed=seed, states=np.stack(states), actions=np.stack(actions), success=success,
                steps=steps)


def collect_demos(tasks: list[Task], seeds_per_task: int, base_seed: int, *, chunk_len: int,
                  max_chunks: int) -> list[Demo]:
    env = BuiltinTableEnv()
    demos = []
    try:
        for t_index, task in enumerate(tasks):
            for j in range(seeds_per_task):
                demo = collect_demo(env, task, base_seed + 1000 * t_index + j, chunk_len=chunk_len,
                                    max_chunks=max_chunks)
                if not demo.success:
                    raise RuntimeError(f"expert failed on task {task.name} seed {demo.seed} "
                                       f"within {max_chunks} chunks")
                demos.append(demo)
    finally:
        env.close()
    return demos
