"""robosuite 1.4.0 itself as the reference: environments (cached per process), the episode start
the engine's set_state defines, and reference rollouts through env.step."""

from __future__ import annotations

import functools
import os

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

SCENES = ("Lift", "Stack", "PickPlaceCan", "Door")


@functools.lru_cache(maxsize=None)
def make_env(scene: str, robot: str = "Panda"):
    import robosuite as suite

    if robot != "Panda":  # LIBERO's robots register themselves with robosuite on import
        from vlarl_fast.envs.libero.config import ensure_config

        ensure_config()  # LIBERO's config file, so that importing libero does not prompt
        import libero.libero.envs.robots  # noqa: F401  (needs no LIBERO assets)

    env = suite.make(
        scene, robots=robot,
        controller_configs=suite.load_controller_config(default_controller="OSC_POSE"),
        has_renderer=False, has_offscreen_renderer=False, use_camera_obs=False,
        ignore_done=True, hard_reset=False, reward_shaping=False)
    np.random.seed(0)  # robosuite's object placement and init noise draw from np.random
    env.reset()
    return env


def start(env, state: np.ndarray) -> None:
    """The episode start that Engine.set_state(flattened state) defines, applied to robosuite:
    the state, MuJoCo's reset warm start, the goal at the current pose, the gripper at rest."""
    env.sim.set_state_from_flattened(state)
    env.sim.data.qacc_warmstart[:] = 0
    env.sim.forward()
    robot = env.robots[0]
    robot.controller.update(force=True)
    robot.controller.reset_goal()
    robot.gripper.current_action = np.zeros(robot.gripper.dof)


def rollout(env, state: np.ndarray, actions: np.ndarray) -> dict:
    """env.step through `actions` [K, 7] from `state`; per-step qpos, qvel and observations."""
    start(env, state)
    robot = env.robots[0]
    keys = ("qpos", "qvel", "eef_pos", "eef_quat", "gripper_qpos", "gripper_contact")
    out = {k: [] for k in keys}
    for a in actions:
        obs, _, _, _ = env.step(a)
        out["gripper_contact"].append(bool(env.check_contact(robot.gripper)))
        out["qpos"].append(env.sim.data.qpos.copy())
        out["qvel"].append(env.sim.data.qvel.copy())
        out["eef_pos"].append(obs["robot0_eef_pos"])
        out["eef_quat"].append(obs["robot0_eef_quat"])
        out["gripper_qpos"].append(obs["robot0_gripper_qpos"])
    result = {k: np.array(v) for k, v in out.items()}
    result["gripper_command"] = np.array(robot.gripper.current_action)
    result["goal_ori"] = np.array(robot.controller.goal_ori)
    return result


def grasp_actions(rng, k: int) -> np.ndarray:
    """Down with the gripper open, close on whatever is there, lift, open again: gripper opening
    and closing and contacts with the table and objects; noise on every dimension."""
    a = rng.uniform(-0.3, 0.3, size=(k, 7))
    phase = np.arange(k) * 4 // max(k, 1)
    a[:, 2] += np.where(phase < 2, -0.9, 0.9)
    a[:, 6] = np.where((phase == 0) | (phase == 3), -1.0, 1.0)
    return a


def random_actions(rng, k: int) -> np.ndarray:
    return rng.uniform(-1, 1, size=(k, 7))


def diverse_states(env, rng, n: int, warm_steps: int = 5) -> np.ndarray:
    """n starting states: env's reset state and states after a few random control steps."""
    base = env.sim.get_state().flatten()
    states = [base]
    for _ in range(n - 1):
        start(env, base)
        for a in random_actions(rng, warm_steps):
            env.step(a)
        states.append(env.sim.get_state().flatten())
    start(env, base)
    return np.stack(states)


def _object_position(env, scene: str) -> np.ndarray:
    data = env.sim.data
    if scene == "Lift":
        return data.body_xpos[env.cube_body_id].copy()
    if scene == "Stack":
        return data.body_xpos[env.cubeA_body_id].copy()
    if scene == "PickPlaceCan":
        return data.body_xpos[env.obj_body_id["Can"]].copy()
    if scene == "Door":
        return data.site_xpos[env.door_handle_site_id].copy()
    raise ValueError(f"scene: no object known for {scene!r}")


def reach_grasp_actions(env, scene: str, state: np.ndarray, rng, k: int = 50) -> np.ndarray:
    """A scripted reach-grasp-lift (Door: grasp and pull the handle), closed-loop in robosuite;
    returns the actions it took, to replay open-loop elsewhere. Fingers close on the object."""
    start(env, state)
    actions = []
    for t in range(k):
        obj = _object_position(env, scene)
        eef = env.sim.data.site_xpos[env.robots[0].eef_site_id]
        frac = t / k
        if frac < 0.3:
            target, grip = obj + [0, 0, 0.08], -1.0
        elif frac < 0.5:
            target, grip = obj + [0, 0, -0.01], -1.0
        elif frac < 0.65:
            target, grip = obj + [0, 0, -0.01], 1.0
        else:
            target, grip = obj + ([-0.2, -0.1, 0.0] if scene == "Door" else [0, 0, 0.2]), 1.0
        a = np.zeros(7)
        a[:3] = np.clip((target - eef) / 0.05, -1, 1)
        a[3:6] = rng.normal(scale=0.02, size=3)
        a[6] = grip
        env.step(a)
        actions.append(a)
    return np.array(actions)


def _jittered_rollout(env, state, actions, rel: float, pattern: np.ndarray) -> dict:
    """rollout() with every torque the controller returns scaled by (1 + rel * pattern): a
    rounding-level difference in the controller, the kind the native engine introduces."""
    controller = env.robots[0].controller
    original = controller.run_controller

    def jittered():
        return original() * (1.0 + rel * pattern)

    controller.run_controller = jittered
    try:
        return rollout(env, state, actions)
    finally:
        del controller.run_controller  # back to the class method


def self_divergence(env, state: np.ndarray, actions: np.ndarray, ref: dict,
                    num_random: int = 8) -> dict:
    """robosuite's own sensitivity to rounding: per step, the largest difference between `ref`
    and robosuite rollouts perturbed at rounding level, for positions (qpos and the
    observations: "pos") and velocities (qvel: "vel"). Perturbations: the initial arm qpos
    scaled by 1 +- 1e-15; the controller's torques scaled by 1 + 1e-13 x p for p = +-(1, -1,
    1, ...) and `num_random` fixed normal draws. Past a discontinuity the divergence depends on
    the perturbation's direction by orders of magnitude, hence several."""
    nj = len(env.robots[0]._ref_joint_pos_indexes)
    out = {"pos": np.zeros(len(actions)), "vel": np.zeros(len(actions))}
    alternating = np.where(np.arange(nj) % 2 == 0, 1.0, -1.0)
    patterns = [alternating, -alternating]
    patterns += list(np.random.default_rng(0).normal(size=(num_random, nj)))
    others = []
    for sign in (1.0, -1.0):
        s = state.copy()
        s[1:1 + nj] *= 1.0 + sign * 1e-15
        others.append(rollout(env, s, actions))
    others += [_jittered_rollout(env, state, actions, 1e-13, p) for p in patterns]
    for other in others:
        for key in ("qpos", "eef_pos", "eef_quat", "gripper_qpos"):
            out["pos"] = np.maximum(out["pos"], np.abs(other[key] - ref[key]).max(axis=1))
        out["vel"] = np.maximum(out["vel"], np.abs(other["qvel"] - ref["qvel"]).max(axis=1))
    return out
