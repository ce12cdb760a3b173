"""Reads the robot, controller and gripper parameters of a live robosuite 1.4.0 environment.

`spec_from_robosuite(env)` turns a robosuite (or LIBERO) environment into a `RobosuiteSpec`:
plain numbers and model indexes that the native controller (csrc/core/osc_controller.h) needs,
nothing hard-coded about the scene. Supported: one single-arm robot (Panda and LIBERO's
MountedPanda / OnTheGroundPanda) with robosuite's OSC_POSE controller in its delta, fixed
impedance form without interpolators or orientation limits, and a PandaGripper.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import mujoco
import numpy as np

# format_action of the supported grippers: current += sign * speed * np.sign(action).
_GRIPPER_SIGNS = {"PandaGripper": (-1.0, 1.0)}


@dataclass(frozen=True)
class RobosuiteSpec:
    """What `Engine.from_robosuite` takes from a robosuite environment."""

    model: mujoco.MjModel = field(repr=False)
    robot: str
    gripper: str
    controller_name: str
    controller: dict  # OscSpec fields for the native controller
    observation: dict  # eef site/body and qpos addresses recorded per control step
    substeps: int  # int(control_timestep / model_timestep), as robosuite's env.step
    control_timestep: float
    initial_joint: np.ndarray = field(repr=False)  # controller.initial_joint (nullspace target)
    eef_site_name: str = ""
    eef_body_name: str = ""

    @property
    def num_joints(self) -> int:
        return len(self.controller["qvel_index"])

    @property
    def action_dim(self) -> int:
        return 6 + (1 if self.controller["gripper_actuators"] else 0)

    @property
    def flat_state_size(self) -> int:
        """Length of robosuite's flattened state: [time, qpos, qvel]."""
        return 1 + self.model.nq + self.model.nv


def unwrap_robosuite(env):
    """The robosuite environment inside LIBERO's / gym wrappers (objects with `.env`)."""
    seen = 0
    while not hasattr(env, "robots") and hasattr(env, "env") and seen < 16:
        env, seen = env.env, seen + 1
    if not hasattr(env, "robots") or not hasattr(env, "sim"):
        raise TypeError(f"env: expected a robosuite environment (with .robots and .sim), "
                        f"got {type(env).__name__}")
    return env


def _id(model, obj: mujoco.mjtObj, name: str, what: str) -> int:
    i = mujoco.mj_name2id(model, obj, name)
    if i < 0:
        raise ValueError(f"{what}: no {obj.name[6:].lower()} named {name!r} in the model")
    return int(i)


def _vec(value, n: int, what: str) -> list[float]:
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,))
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: expected finite values, got {arr.tolist()}")
    return [float(x) for x in arr]


def _nullspace_kp() -> float:
    from robosuite.utils import control_utils

    fn = getattr(control_utils.nullspace_torques, "py_func", control_utils.nullspace_torques)
    return float(inspect.signature(fn).parameters["joint_kp"].default)


def _check_controller(c) -> None:
    name = getattr(c, "name", type(c).__name__)
    if name != "OSC_POSE":
        raise NotImplementedError(f"controller: only OSC_POSE is supported, got {name}")
    if c.impedance_mode != "fixed":
        raise NotImplementedError(f"controller.impedance_mode: only 'fixed' is supported, "
                                  f"got {c.impedance_mode!r}")
    if not c.use_delta:
        raise NotImplementedError("controller.control_delta: only delta control is supported")
    if c.interpolator_pos is not None or c.interpolator_ori is not None:
        raise NotImplementedError("controller.interpolation: only None is supported")
    if c.orientation_limits is not None and np.array(c.orientation_limits).any():
        raise NotImplementedError("controller.orientation_limits: only None is supported")


def spec_from_robosuite(env) -> RobosuiteSpec:
    """Reads a live robosuite environment's robot, controller and gripper settings."""
    env = unwrap_robosuite(env)
    if len(env.robots) != 1:
        raise NotImplementedError(f"env.robots: exactly one robot is supported, "
                                  f"got {len(env.robots)}")
    robot = env.robots[0]
    if getattr(robot.robot_model, "arm_type", "single") != "single":
        raise NotImplementedError(f"robot: only single-arm robots are supported, "
                                  f"got arm_type {robot.robot_model.arm_type!r}")
    c = robot.controller
    _check_controller(c)
    model = env.sim.model._model
    if not np.isclose(model.opt.timestep, env.model_timestep):
        raise ValueError(f"model timestep {model.opt.timestep} differs from env.model_timestep "
                         f"{env.model_timestep}")
    substeps = int(env.control_timestep / env.model_timestep)

    gripper_name, gripper_acts, gripper_sign, gripper_speed, gripper_qpos = "", [], [], 0.0, []
    if robot.has_gripper:
        gripper_name = type(robot.gripper).__name__
        if gripper_name not in _GRIPPER_SIGNS:
            raise NotImplementedError(f"gripper: supported {sorted(_GRIPPER_SIGNS)}, "
                                      f"got {gripper_name}")
        gripper_acts = [_id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, a, "gripper.actuators")
                        for a in robot.gripper.actuators]
        gripper_sign = list(_GRIPPER_SIGNS[gripper_name])
        if len(gripper_sign) != len(gripper_acts):
            raise ValueError(f"gripper.actuators: expected {len(gripper_sign)} for "
                             f"{gripper_name}, got {len(gripper_acts)}")
        gripper_speed = float(robot.gripper.speed)
        gripper_qpos = [int(i) for i in robot._ref_gripper_joint_pos_indexes]

    n = len(c.qvel_index)
    low, high = robot.torque_limits
    position_limits = None
    if c.position_limits is not None:
        position_limits = np.asarray(c.position_limits, dtype=np.float64).reshape(2, 3).tolist()
    eef_site = _id(model, mujoco.mjtObj.mjOBJ_SITE, c.eef_name, "controller.eef_name")
    eef_body_name = robot.robot_model.eef_name
    controller = {
        "eef_site": eef_site,
        "qpos_index": [int(i) for i in c.qpos_index],
        "qvel_index": [int(i) for i in c.qvel_index],
        "arm_actuators": [int(i) for i in robot._ref_joint_actuator_indexes],
        "torque_low": _vec(low, n, "robot.torque_limits[0]"),
        "torque_high": _vec(high, n, "robot.torque_limits[1]"),
        "input_min": _vec(c.input_min, 6, "controller.input_min"),
        "input_max": _vec(c.input_max, 6, "controller.input_max"),
        "output_min": _vec(c.output_min, 6, "controller.output_min"),
        "output_max": _vec(c.output_max, 6, "controller.output_max"),
        "kp": _vec(c.kp, 6, "controller.kp"),
        "kd": _vec(c.kd, 6, "controller.kd"),
        "nullspace_kp": _nullspace_kp(),
        "uncouple_pos_ori": bool(c.uncoupling),
        "position_limits": position_limits,
        "gripper_actuators": gripper_acts,
        "gripper_sign": gripper_sign,
        "gripper_speed": gripper_speed,
    }
    observation = {
        "eef_site": int(robot.eef_site_id),
        "eef_body": _id(model, mujoco.mjtObj.mjOBJ_BODY, eef_body_name, "robot_model.eef_name"),
        "gripper_qpos": gripper_qpos,
        "joint_qpos": [int(i) for i in robot._ref_joint_pos_indexes],
    }
    return RobosuiteSpec(
        model=model,
        robot=type(robot.robot_model).__name__,
        gripper=gripper_name,
        controller_name=c.name,
        controller=controller,
        observation=observation,
        substeps=substeps,
        control_timestep=float(env.control_timestep),
        initial_joint=np.array(c.initial_joint, dtype=np.float64),
        eef_site_name=c.eef_name,
        eef_body_name=eef_body_name,
    )
