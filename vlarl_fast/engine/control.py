"""Chunked control on the engine: robosuite's OSC_POSE natively, success predicates, episodes.

`Engine.from_robosuite(env, num_envs, num_threads)` builds an engine on a robosuite (or LIBERO)
environment's model and reads its robot, controller and gripper settings (robosuite_spec.py).
`step_chunk(actions)` then runs K control steps per env natively, each exactly robosuite
1.4.0's `env.step(action)` (forward, OSC_POSE + gripper, mj_step per substep; the goal is set
on the first substep), with the GIL released, recording per step what a policy and a success
check read. See docs/control.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import mujoco
import numpy as np

from vlarl_fast._native import C

_RENDER_MODES = {"none": 0, "end": 1, "every": 2}


@dataclass
class ChunkResult:
    """Per-control-step records of one `step_chunk` call (rows: the envs of the call, in order).

    With env_ids=None the arrays are views of engine-owned buffers, overwritten by the next
    step_chunk with the same K: copy what must outlive it. Steps not executed (after an env's
    success, or for an env that was already done) repeat its last record.
    """

    eef_pos: np.ndarray  # [n, K, 3] float64: robot0_eef_pos (grip site position)
    eef_quat: np.ndarray  # [n, K, 4] float64: robot0_eef_quat, (x, y, z, w)
    gripper_qpos: np.ndarray  # [n, K, num_gripper_joints] float64
    joint_pos: np.ndarray  # [n, K, num_arm_joints] float64
    done: np.ndarray  # [n, K] bool: the env had succeeded or failed at or before step k
    success: np.ndarray  # [n] bool: the episode has succeeded
    steps_executed: np.ndarray  # [n] int32: control steps run in this call
    frames_every: np.ndarray | None = None  # [n, K, cameras, H, W, 3] uint8 (render="every")


class _Buffers:
    """Output buffers for one chunk length K, allocated once and reused."""

    def __init__(self, n: int, k: int, ng: int, nj: int, frame_shape=None):
        self.eef_pos = np.zeros((n, k, 3))
        self.eef_quat = np.zeros((n, k, 4))
        self.gripper_qpos = np.zeros((n, k, ng))
        self.joint_pos = np.zeros((n, k, nj))
        self.done = np.zeros((n, k), dtype=np.uint8)
        self.success = np.zeros(n, dtype=np.uint8)
        self.steps = np.zeros(n, dtype=np.int32)
        self.frames_every = None if frame_shape is None else np.zeros((n, k, *frame_shape),
                                                                      dtype=np.uint8)

    def result(self, ids: np.ndarray | None) -> ChunkResult:
        pick = (lambda a: a) if ids is None else (lambda a: a[ids])
        return ChunkResult(
            eef_pos=pick(self.eef_pos), eef_quat=pick(self.eef_quat),
            gripper_qpos=pick(self.gripper_qpos), joint_pos=pick(self.joint_pos),
            done=pick(self.done.view(bool)), success=pick(self.success.view(bool)),
            steps_executed=pick(self.steps),
            frames_every=None if self.frames_every is None else pick(self.frames_every))


def _float_array(name: str, value, shape: str) -> np.ndarray:
    """value as a float64 array; TypeError naming `name` when it is not numeric."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{name} must be a float array of shape {shape}: {exc}") from exc
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)) \
            or arr.dtype == np.bool_:
        raise TypeError(f"{name} must be a float array of shape {shape}, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


class ControlMixin:
    """Methods of `Engine` that execute action chunks through the native controller."""

    _runner = None
    spec = None  # RobosuiteSpec of an engine built by from_robosuite
    last_chunk = None  # the ChunkResult of the last step_chunk
    frames_every = None  # [n, K, cameras, H, W, 3] of the last step_chunk(render="every")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_robosuite(cls, env, num_envs: int, num_threads: int | None = None, **engine_options):
        """An engine of `num_envs` copies of a live robosuite/LIBERO environment's scene.

        Reads the model, robot, OSC_POSE controller and gripper settings (indexes, gains,
        limits, substeps, the controller's current `initial_joint` as every env's nullspace
        target) and starts every env at the robosuite env's current state.
        """
        from vlarl_fast.engine.robosuite_spec import spec_from_robosuite, unwrap_robosuite

        spec = spec_from_robosuite(env)
        engine = cls(spec.model, num_envs, num_threads, **engine_options)
        engine._attach_control(spec)
        engine.set_state(unwrap_robosuite(env).sim.get_state().flatten())
        return engine

    def _attach_control(self, spec) -> None:
        self.spec = spec
        self._runner = C.ChunkRunner(self._batch, spec.controller, spec.observation,
                                     spec.substeps, spec.initial_joint.tolist())
        self._chunk_buffers: dict[tuple, _Buffers] = {}
        rest = mujoco.MjData(spec.model)  # MuJoCo's reset state: zero warmstart, ctrl, forces
        self._rest_state = np.empty(mujoco.mj_stateSize(spec.model, self.state_spec))
        mujoco.mj_getState(spec.model, rest, self._rest_state, self.state_spec)

    def _require_control(self, what: str) -> None:
        if self._runner is None:
            raise RuntimeError(f"{what}: this engine has no controller; build it with "
                               f"Engine.from_robosuite(env, num_envs)")

    # ------------------------------------------------------------------ state hooks (engine.py)
    def _convert_states(self, states: np.ndarray, spec) -> np.ndarray:
        """robosuite's flattened [time, qpos, qvel] rows -> full engine states at rest."""
        if self._runner is None or spec is not None:
            return states
        flat = 1 + self.nq + self.nv
        if states.shape[-1] != flat or states.shape[-1] == self._rest_state.size:
            return states
        full = np.broadcast_to(self._rest_state, (*states.shape[:-1], self._rest_state.size))
        full = full.copy()
        full[..., :flat] = states
        return full

    def _after_set_state(self, env_ids) -> None:
        """Starts episodes: goal at the current eef pose, gripper command at rest, success off."""
        if self._runner is not None:
            self._runner.reset_episodes(env_ids)

    # ------------------------------------------------------------------ configuration
    def set_initial_joint(self, q, env_ids: Sequence[int] | None = None) -> None:
        """Nullspace target (robosuite's controller.initial_joint): [num_joints] or one row per
        env. robosuite sets it at reset from the robot's initial qpos and keeps it when a state
        is loaded with set_state_from_flattened; so does the engine's set_state."""
        self._require_control("set_initial_joint")
        ids = self._env_ids(env_ids)
        rows = self.num_envs if ids is None else ids.size
        nj = self.spec.num_joints
        arr = _float_array("q", q, f"({nj},) or ({rows}, {nj})")
        if arr.shape not in ((nj,), (rows, nj)):
            raise ValueError(f"q must have shape ({nj},) or ({rows}, {nj}), got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("q contains NaN or inf values")
        self._runner.set_initial_joint(np.ascontiguousarray(arr), ids)

    def initial_joint(self, env_id: int) -> np.ndarray:
        self._require_control("initial_joint")
        return np.array(self._runner.initial_joint(self._env_id("env_id", env_id)))

    def controller_goal(self, env_id: int):
        """(goal_pos [3], goal_ori [3, 3], gripper current_action) of one env."""
        self._require_control("controller_goal")
        pos, ori, grip = self._runner.goal(self._env_id("env_id", env_id))
        return pos, ori, np.array(grip)

    def set_controller_goal(self, goal_pos, goal_ori, gripper_action,
                            env_ids: Sequence[int] | None = None) -> None:
        """Overrides the controller state (robosuite's controller.goal_pos [3], goal_ori [3, 3],
        gripper.current_action [num gripper actuators]) of the given envs, one value for all
        or one row per env. set_state resets it; call this after set_state, e.g. to continue
        an episode that robosuite started."""
        self._require_control("set_controller_goal")
        ids = self._env_ids(env_ids)
        rows = np.arange(self.num_envs) if ids is None else ids
        ng = len(self.spec.controller["gripper_actuators"])
        parts = []
        for name, value, shape in (("goal_pos", goal_pos, (3,)), ("goal_ori", goal_ori, (3, 3)),
                                   ("gripper_action", gripper_action, (ng,))):
            arr = _float_array(name, value, f"{shape} or {(rows.size, *shape)}")
            if arr.shape == shape:
                arr = np.broadcast_to(arr, (rows.size, *shape))
            if arr.shape != (rows.size, *shape) or not np.isfinite(arr).all():
                raise ValueError(f"{name} must be finite with shape {shape} or "
                                 f"{(rows.size, *shape)}, got {np.shape(value)}")
            parts.append(arr)
        for j, env in enumerate(rows):
            self._runner.set_goal(int(env), *(np.ascontiguousarray(p[j]) for p in parts))

    def set_success(self, predicates, env_ids: Sequence[int] | None = None) -> None:
        """Success predicates (vlarl_fast.engine.predicates; all must hold) for the given envs.
        `predicates`: one predicate or a sequence of them. An empty sequence disables success
        and early stopping. Takes effect from the next step."""
        self._require_control("set_success")
        accepted = ("a predicate (InRegion, InContact, JointAbove, JointBelow, OnTop, SiteUnder, "
                    "SiteInBox from "
                    "vlarl_fast.engine.predicates) or a list of them")
        if callable(getattr(predicates, "resolve", None)):
            preds = [predicates]
        elif isinstance(predicates, (str, bytes, dict)) or not hasattr(predicates, "__iter__"):
            raise TypeError(f"set_success accepts {accepted}, got "
                            f"{type(predicates).__name__} {predicates!r}")
        else:
            preds = list(predicates)
        for p in preds:
            if not callable(getattr(p, "resolve", None)):
                raise TypeError(f"set_success accepts {accepted}; got an element of type "
                                f"{type(p).__name__}: {p!r}")
        resolved = [p.resolve(self.spec.model) for p in preds]
        for p, r in zip(preds, resolved):
            if not isinstance(r, dict):
                raise TypeError(f"set_success: {type(p).__name__}.resolve(model) must return a "
                                f"dict, got {type(r).__name__}")
        self._runner.set_predicates(self._env_ids(env_ids), resolved)

    def num_success_predicates(self, env_id: int) -> int:
        self._require_control("num_success_predicates")
        return self._runner.num_predicates(self._env_id("env_id", env_id))

    # ------------------------------------------------------------------ execution
    def _chunk_actions(self, actions, rows: int) -> np.ndarray:
        try:
            arr = np.asarray(actions)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"actions must be a float array [n, K, action_dim]: {exc}") from exc
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"actions must be a floating-point array, got dtype {arr.dtype}")
        dim = self._runner.action_dim
        if arr.ndim == 2:
            arr = arr[:, None, :]
        if arr.ndim != 3 or arr.shape[0] != rows or arr.shape[2] != dim or arr.shape[1] < 1:
            raise ValueError(f"actions must have shape ({rows}, K, {dim}) or ({rows}, {dim}), "
                             f"got {np.shape(actions)}")
        if not np.isfinite(arr).all():
            raise ValueError("actions contain NaN or inf values")
        return np.ascontiguousarray(arr, dtype=np.float64)

    def _buffers(self, k: int, every: bool) -> _Buffers:
        renderer = getattr(self, "_renderer", None)
        key = (k, every)
        buf = self._chunk_buffers.get(key)
        if buf is None:
            frame_shape = renderer.frames.shape[1:] if every else None
            buf = self._chunk_buffers[key] = _Buffers(
                self.num_envs, k, len(self.spec.observation["gripper_qpos"]),
                len(self.spec.observation["joint_qpos"]), frame_shape)
        return buf

    def step_chunk(self, actions, env_ids: Sequence[int] | None = None,
                   render: str | None = None) -> ChunkResult:
        """Runs K control steps per env natively (GIL released) and records each step.

        Args:
            actions: [n, K, 7] (or [n, 7] for K = 1) robosuite actions: OSC_POSE deltas in
                [-1, 1] (scaled by the controller's output range) and the gripper command
                (< 0 open, > 0 close), n = len(env_ids) or num_envs.
            env_ids: envs to step (default all).
            render: "end" (each env once after its last executed step, into `self.frames`),
                "every" (after every step, into ChunkResult.frames_every) or "none"; default
                "end" when the engine has cameras, else "none".

        An env whose success predicates hold after a step stops there (done from that step
        on); envs that already succeeded, or are UNSTABLE/ERROR, execute nothing. MuJoCo
        errors are raised as MujocoError after all other envs have finished their chunk.
        """
        self._check_open("step_chunk")
        self._require_control("step_chunk")
        # KeyboardInterrupt (main thread) or close() from another thread stop every env at its
        # next control-step boundary and raise; envs keep the control steps they ran, the
        # call's records are not returned (last_chunk keeps the previous call's).
        ids = self._env_ids(env_ids)
        rows = self.num_envs if ids is None else ids.size
        acts = self._chunk_actions(actions, rows)
        renderer = getattr(self, "_renderer", None)
        if render is None:
            render = "end" if renderer is not None else "none"
        if not isinstance(render, str) or render not in _RENDER_MODES:
            raise ValueError(f"render must be one of {sorted(_RENDER_MODES)}, got {render!r}")
        if render != "none" and renderer is None:
            raise ValueError(f"render={render!r} needs an engine built with cameras")
        buf = self._buffers(acts.shape[1], render == "every")
        failed = self._runner.run(acts, ids, buf.eef_pos, buf.eef_quat, buf.gripper_qpos,
                                  buf.joint_pos, buf.done, buf.success, buf.steps,
                                  _RENDER_MODES[render], renderer, buf.frames_every)
        if failed:
            from vlarl_fast._native import MujocoError

            details = "; ".join(f"env {i}: {self.status_message(i)}" for i in failed)
            raise MujocoError(f"MuJoCo error in {len(failed)} env(s) (others stepped): {details}")
        self.last_chunk = buf.result(ids)
        if self.last_chunk.frames_every is not None:
            self.frames_every = self.last_chunk.frames_every
        return self.last_chunk
