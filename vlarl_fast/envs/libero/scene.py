"""Building a LIBERO task's scene with LIBERO's own code, once per task.

`LiberoScene(task)` constructs LIBERO's `ControlEnv` from the task's BDDL file (robosuite 1.4,
OSC_POSE, 20 Hz control, 500 Hz physics) and resets it the way a fresh LIBERO episode starts
(`seed(0); reset()`). Its MuJoCo model is what the native engine copies; the env itself stays
as the reference for LIBERO's success code (see success.py). No cameras or renderer are made
here: the engine renders natively.
"""

from __future__ import annotations

import contextlib
import io

import mujoco

from vlarl_fast.envs.libero.config import import_libero
from vlarl_fast.envs.libero.registry import LiberoTask

CAMERAS = ("agentview", "robot0_eye_in_hand")


def make_libero_env(task: LiberoTask, *, cameras=CAMERAS, height: int = 256, width: int = 256):
    """LIBERO's `OffScreenRenderEnv` for a task, as LIBERO / SimpleVLA-RL evaluation builds it
    (used as the reference in tests and benchmarks; the engine does not need it)."""
    import_libero()
    from libero.libero.envs import OffScreenRenderEnv

    with contextlib.redirect_stdout(io.StringIO()):
        return OffScreenRenderEnv(bddl_file_name=task.bddl_file, camera_names=list(cameras),
                                  camera_heights=height, camera_widths=width)


class LiberoScene:
    """One task's scene: LIBERO's env (no cameras) reset like a fresh episode, and its model."""

    def __init__(self, task: LiberoTask, seed: int = 0):
        import_libero()
        from libero.libero.envs.env_wrapper import ControlEnv

        self.task = task
        with contextlib.redirect_stdout(io.StringIO()):
            self.env = ControlEnv(bddl_file_name=task.bddl_file, use_camera_obs=False,
                                  has_renderer=False, has_offscreen_renderer=False,
                                  camera_names=[])
            self.env.seed(seed)
            self.env.reset()
        self.robosuite_env = self.env.env
        self.language = task.language

    @property
    def model(self) -> mujoco.MjModel:
        return self.robosuite_env.sim.model._model

    @property
    def data(self) -> mujoco.MjData:
        return self.robosuite_env.sim.data._data

    def goal(self) -> list[tuple]:
        """The BDDL goal: a conjunction of predicates, e.g. [('on', 'bowl_1', 'plate_1')]."""
        return [tuple(p) for p in self.robosuite_env.parsed_problem["goal_state"]]

    def close(self) -> None:
        self.env.close()
