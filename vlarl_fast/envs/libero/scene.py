"""Building a LIBERO task's scene with LIBERO's own code, once per task.

`LiberoScene(task)` constructs LIBERO's `ControlEnv` from the task's BDDL file (robosuite 1.4,
OSC_POSE, 20 Hz control, 500 Hz physics) and resets it the way a fresh LIBERO episode starts
(`seed(0); reset()`). Its MuJoCo model is what the native engine copies; the env itself stays
as the reference for LIBERO's success code (see success.py). No cameras or renderer are made
here: the engine renders natively.

`first_step(init_state, action)` runs the first control step of a fresh LIBERO episode with
LIBERO's own code. It is special: robosuite's OSC controller caches the robot's kinematics and
dynamics (end-effector pose and velocity, Jacobians, mass matrix, joint state) and refreshes the
cache only after its first `run_controller`; `reset()` fills it at the robot's home pose and
LIBERO's `set_init_state` does not refresh it, so the first control step of every fresh episode
sets its goal relative to the home pose's end effector and computes its first substep's torques
from home-pose quantities (docs/libero.md measures the effect: several cm of end-effector
motion). Its goal orientation, too, is the home pose's until an action rotates: robosuite's
OSC keeps the previous goal orientation when an action's rotation part is zero (as LIBERO's
no-op settle action is). The engine's controller reads the current state, so the engine takes
that first step from here (task_engine.py).
"""

from __future__ import annotations

import contextlib
import copy
import io

import mujoco
import numpy as np

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
        robot = self.robosuite_env.robots[0]
        # The state reset() leaves (robot at its home pose): [time, qpos, qvel].
        self.reset_state = self.robosuite_env.sim.get_state().flatten().copy()
        # The controller's state as a fresh episode starts it (after reset, before any step).
        self._fresh_controller = {k: copy.deepcopy(v) for k, v in vars(robot.controller).items()
                                  if isinstance(v, (np.ndarray, bool, int, float))}
        self._gripper_dof = robot.gripper.dof

    def first_step(self, init_state, action) -> bool:
        """The first control step of a fresh LIBERO episode (`seed(0); reset();
        set_init_state(init_state); step(action)`), by LIBERO's code, on this scene's env.
        Leaves the resulting mjData in `self.data` and returns LIBERO's success after it."""
        env = self.robosuite_env
        sim = env.sim
        robot = env.robots[0]
        sim.set_state_from_flattened(np.asarray(init_state, dtype=np.float64))
        for name in ("qacc_warmstart", "ctrl", "qfrc_applied", "xfrc_applied"):
            getattr(sim.data, name)[...] = 0  # a fresh episode's MjData (hard reset)
        sim.forward()
        for key, value in self._fresh_controller.items():
            setattr(robot.controller, key, copy.deepcopy(value))
        robot.gripper.current_action = np.zeros(self._gripper_dof)
        action = np.asarray(action, dtype=np.float64)
        substeps = int(env.control_timestep / env.model_timestep)  # as robosuite
        for i in range(substeps):  # robosuite's env.step without observables
            sim.forward()
            env._pre_action(action, policy_step=(i == 0))
            sim.step()
        return bool(env._check_success())

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
