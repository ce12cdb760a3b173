"""A scripted expert for the built-in tasks (one demo per task feeds the one-demo SFT).

Closed-loop in Cartesian space through robosuite's OSC_POSE deltas (input units: 1 = 5 cm):
touch/reach: hover above the target, then descend onto its top with the gripper closed (a pointer).
Actions are `[dx, dy, dz, 0, 0, 0, gripper]` with gripper -1 open / +1 closed.
"""

from __future__ import annotations

import numpy as np

from vlarl_fast.envs.builtin.scene import CUBE_HALF_SIZE
from vlarl_fast.envs.builtin.tasks import Task

GAIN = 1.0 / 0.05 * 0.7  # OSC units per metre of error
HOVER = 0.07


def _move(eef: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.clip((target - eef) * GAIN, -1.0, 1.0)


def expert_action(task: Task, eef: np.ndarray, cube: np.ndarray) -> np.ndarray:
    action = np.zeros(7)
    xy_err = np.linalg.norm((cube - eef)[:2])
    if task.kind in ("touch", "reach"):
        if xy_err > 0.012:
            target = np.array([cube[0], cube[1], max(eef[2], cube[2] + HOVER)])
        else:
            target = cube + np.array([0.0, 0.0, CUBE_HALF_SIZE - 0.03])
        action[:3] = _move(eef, target)
        action[6] = 1.0
    else:
        raise ValueError(f"task.kind: expected one of ('reach', 'touch'), got {task.kind!r}")
    return action
