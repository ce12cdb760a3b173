"""N envs of one LIBERO task on the native engine: episodes from LIBERO's init states, chunked
policy steps with LIBERO's success check after every control step, frames for the policy.

    scene = LiberoScene(get_task("libero_spatial", 0))
    eng = LiberoTaskEngine(scene, num_envs=8, num_threads=2)
    frames = eng.reset(init_state_ids=range(8))        # [8, 2, 256, 256, 3] uint8 (openvla)
    out = eng.step(actions)                            # actions [8, K, 7]
    out.success, out.done, out.frames

An episode starts exactly as a fresh LIBERO episode (`seed(0); reset(); set_init_state(s)`): the
init state's qpos, qvel and time, MuJoCo's rest values for warm start and controls, the gripper
command at rest, and a first control step taken with LIBERO's own controller code (its cached
home-pose kinematics, see scene.py), whose resulting mjData is copied into the engine env; the
engine steps natively from there. Then `settle_steps` no-op actions run without success checks
(OpenVLA-OFT / SimpleVLA-RL's num_steps_wait), then the policy's steps. An env
stops at the first control step after which LIBERO's goal holds (success), or when it has run
`max_steps` policy steps (truncated). docs/libero.md lists what differs from LIBERO's env.
"""

from __future__ import annotations

import numpy as np

from vlarl_fast.engine import Engine
from vlarl_fast.envs.chunk_env import ChunkResult
from vlarl_fast.envs.libero.native_goal import compile_native_goal
from vlarl_fast.envs.libero.registry import NOOP_ACTION, SETTLE_STEPS
from vlarl_fast.envs.libero.scene import CAMERAS, LiberoScene
from vlarl_fast.envs.libero.success import LiberoSuccess


class LiberoTaskEngine:
    """Native engine running `num_envs` episodes of one LIBERO task."""

    def __init__(self, scene: LiberoScene, num_envs: int, num_threads: int | None = None, *,
                 cameras=CAMERAS, height: int = 256, width: int = 256,
                 image_convention: str = "openvla", max_steps: int | None = None,
                 settle_steps: int = SETTLE_STEPS, native_goal: bool = True, pool=None,
                 **render_options):
        self.scene = scene
        self.task = scene.task
        self.language = scene.language
        self.max_steps = self.task.max_steps if max_steps is None else int(max_steps)
        self.settle_steps = int(settle_steps)
        cams = list(cameras) if cameras else None
        opts = dict(render_options)
        if cams:
            opts.update(cameras=cams, height=height, width=width,
                        image_convention=image_convention)
        if pool is not None:  # an EnginePool shared with other tasks' engines
            opts["pool"], num_threads = pool, None
        self.engine = Engine.from_robosuite(scene.robosuite_env, num_envs, num_threads, **opts)
        self.num_envs = num_envs
        self.cameras = list(cams or [])
        self.success_check = LiberoSuccess(scene)
        # Goals of joint predicates only run natively (whole chunks in one call, native early
        # stop); others are decided by LIBERO's code after every control step (success.py).
        self.native_predicates = compile_native_goal(scene) if native_goal else None
        self._native_on = np.zeros(num_envs, dtype=bool)
        self.success = np.zeros(num_envs, dtype=bool)
        self.truncated = np.zeros(num_envs, dtype=bool)
        self.episode_steps = np.zeros(num_envs, dtype=np.int64)
        self.init_state_ids = np.full(num_envs, -1, dtype=np.int64)
        self._start_states = np.zeros((num_envs, 1 + self.engine.nq + self.engine.nv))
        self._pending_first = np.zeros(num_envs, dtype=bool)
        # mjData arrays copied from LIBERO's first step into the engine (all that both hold).
        data = scene.data
        self._copy_fields = []
        for name in self.engine.field_names():
            src = getattr(data, name, None)
            view = self.engine.field(name)
            if isinstance(src, np.ndarray) and src.size and view[0].size == src.size:
                self._copy_fields.append((view, src))

    # ------------------------------------------------------------------ helpers
    def _ids(self, env_ids) -> np.ndarray:
        if env_ids is None:
            return np.arange(self.num_envs)
        return np.asarray(env_ids, dtype=np.int64).reshape(-1)

    def _native_goal(self, ids: np.ndarray, on: bool) -> None:
        """Native success predicates on/off for envs (off while settling and for the first
        step, whose states LIBERO does not score or the engine does not own)."""
        if self.native_predicates is None:
            return
        change = ids[self._native_on[ids] != on]
        if change.size:
            self.engine.set_success(self.native_predicates if on else [], change)
            self._native_on[change] = on

    @property
    def done(self) -> np.ndarray:
        return self.success | self.truncated

    @property
    def frames(self) -> np.ndarray | None:
        return self.engine.frames

    def render(self, env_ids=None) -> np.ndarray:
        ids = self._ids(env_ids)
        self.engine.render(ids)
        return self.engine.frames[ids]

    # ------------------------------------------------------------------ episodes
    def reset(self, init_state_ids=None, env_ids=None, *, init_states=None,
              render: bool = True) -> np.ndarray | None:
        """Starts episodes of `env_ids` (default all) from LIBERO init states, chosen by index
        into the task's init states (default: env i takes state i mod 50), or given directly as
        robosuite flattened states `init_states: [n, 1 + nq + nv]`; runs the settle steps and
        returns the frames `[n, num_cameras, H, W, 3]` (None if render=False or no cameras)."""
        ids = self._ids(env_ids)
        if init_states is None:
            table = self.task.init_states()
            if init_state_ids is None:
                init_state_ids = ids % len(table)
            sel = np.asarray(init_state_ids, dtype=np.int64).reshape(-1)
            if sel.size != ids.size:
                raise ValueError(f"init_state_ids has {sel.size} entries for {ids.size} envs")
            if sel.min() < 0 or sel.max() >= len(table):
                raise IndexError(f"{self.task.name} has {len(table)} init states; got ids "
                                 f"{sel.tolist()}")
            states = table[sel]
            self.init_state_ids[ids] = sel
        else:
            states = np.asarray(init_states, dtype=np.float64)
            if states.ndim == 1:
                states = np.broadcast_to(states, (ids.size, states.size))
            self.init_state_ids[ids] = -1
        self._start_states[ids] = states
        self._native_goal(ids, False)
        self.engine.set_state(states, ids)
        self.success[ids] = False
        self.truncated[ids] = False
        self.episode_steps[ids] = 0
        self._pending_first[ids] = True
        if self.settle_steps > 0:
            noop = np.broadcast_to(NOOP_ACTION, (ids.size, NOOP_ACTION.size))
            self._first_step(ids, noop)
        if self.settle_steps > 1:
            noop = np.broadcast_to(NOOP_ACTION, (ids.size, self.settle_steps - 1,
                                                 NOOP_ACTION.size))
            self.engine.step_chunk(noop, env_ids=ids, render="none")
        if self.settle_steps > 0:
            self._native_goal(ids, True)
        if render and self.cameras:
            return self.render(ids)
        return None

    def _first_step(self, ids: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """The episodes' first control step: LIBERO's (scene.first_step), copied into the engine.

        The native controller keeps state across steps that robosuite's does too (the gripper
        command accumulates; the goal orientation persists while actions do not rotate) and the
        engine has no setter for it. So each env first takes the same action natively from the
        state reset() leaves (robot at the home pose): after it, the native controller's goal
        and gripper command are exactly LIBERO's after its first step, which uses the home
        pose's cached kinematics. Then LIBERO's resulting mjData replaces the physics.
        Returns LIBERO's success after the step, [len(ids)] bool."""
        start = np.repeat(self.scene.reset_state[None], ids.size, axis=0)
        start[:, 0] = self._start_states[ids, 0]  # the init state's time: the engine's clock
        self.engine.set_state(start, ids)           # then ends the step where LIBERO's does
        self.engine.step_chunk(np.ascontiguousarray(actions)[:, None, :], env_ids=ids,
                               render="none")
        ok = np.zeros(ids.size, dtype=bool)
        for j, i in enumerate(ids):
            ok[j] = self.scene.first_step(self._start_states[i], actions[j])
            for view, src in self._copy_fields:
                view[i] = src.reshape(view[i].shape)
        self._pending_first[ids] = False
        return ok

    def native_chunk(self, env_ids: np.ndarray, k: int) -> np.ndarray:
        """[len(env_ids)] bool: which envs can run a K-step chunk as one native call (native
        goal, first step taken, at least K steps left before the step limit)."""
        if self.native_predicates is None:
            return np.zeros(env_ids.size, dtype=bool)
        return ~self._pending_first[env_ids] & (self.max_steps - self.episode_steps[env_ids] >= k)

    def finish_native(self, env_ids: np.ndarray, steps: np.ndarray, success: np.ndarray) -> None:
        """Episode bookkeeping after a native chunk of env_ids (steps executed, success)."""
        self.episode_steps[env_ids] += steps.astype(np.int64)
        self.success[env_ids] |= success
        self.truncated[env_ids] |= ~self.success[env_ids] & (self.episode_steps[env_ids] >=
                                                             self.max_steps)

    def step(self, actions, env_ids=None, *, render: bool = True) -> ChunkResult:
        """Runs the chunk `actions: [n, K, 7]` (n = len(env_ids) or num_envs) step by step;
        after every control step LIBERO's goal is checked and an env that succeeded stops
        (its remaining actions are not executed). Envs already done execute nothing."""
        ids = self._ids(env_ids)
        acts = np.asarray(actions, dtype=np.float64)
        if acts.ndim == 2:
            acts = acts[:, None, :]
        if acts.ndim != 3 or acts.shape[0] != ids.size:
            raise ValueError(f"actions must have shape ({ids.size}, K, 7), got {acts.shape}")
        executed = np.zeros(ids.size, dtype=np.int64)
        active = ~self.done[ids]
        K = acts.shape[1]
        run = ids[active]
        if (self.native_predicates is not None and run.size and K > 1
                and not self._pending_first[run].any()
                and (self.max_steps - self.episode_steps[run] >= K).all()):
            # The whole chunk in one native call; envs stop natively at their success step.
            everyone = run.size == self.num_envs and bool((run == np.arange(run.size)).all())
            r = self.engine.step_chunk(acts[active], env_ids=None if everyone else run,
                                       render="none")
            executed[active] = r.steps_executed
            self.finish_native(run, r.steps_executed, r.success)
            active[:] = False
        for k in range(K):
            rows = np.nonzero(active)[0]
            if rows.size == 0:
                break
            run = ids[rows]
            first = self._pending_first[run]
            ok = np.zeros(run.size, dtype=bool)
            if first.any():
                ok[first] = self._first_step(run[first], acts[rows[first], k])
                self._native_goal(run[first], True)
            if (~first).any():
                native = run[~first]
                everyone = (native.size == self.num_envs
                            and bool((native == np.arange(self.num_envs)).all()))
                self.engine.step_chunk(acts[rows[~first], k:k + 1],
                                       env_ids=None if everyone else native, render="none")
                ok[~first] = self.success_check.check_engine(self.engine, native)
            executed[rows] += 1
            self.episode_steps[run] += 1
            self.success[run[ok]] = True
            self.truncated[run] |= (~ok) & (self.episode_steps[run] >= self.max_steps)
            active[rows] = ~self.done[run]
        frames = self.render(ids) if (render and self.cameras) else None
        return ChunkResult(executed=executed, success=self.success[ids].copy(),
                           done=self.done[ids].copy(), frames=frames,
                           episode_steps=self.episode_steps[ids].copy())

    def proprio(self, env_ids=None) -> np.ndarray:
        """[n, 8]: end-effector position, end-effector orientation as axis-angle, gripper qpos
        (OpenVLA-OFT's LIBERO state: eef_pos, quat2axisangle(eef_quat), gripper_qpos), at the
        end of the last control step."""
        ids = self._ids(env_ids)
        obs = self.engine.spec.observation
        pos = self.engine.field("site_xpos")[ids, obs["eef_site"]]
        quat = self.engine.field("xquat")[ids, obs["eef_body"]]  # (w, x, y, z)
        grip = self.engine.qpos[ids][:, list(obs["gripper_qpos"])]
        w = np.clip(quat[:, 0], -1.0, 1.0)
        den = np.sqrt(1.0 - w * w)
        angle = 2.0 * np.arccos(w)
        safe = den > 1e-12
        axis = np.zeros((ids.size, 3))
        axis[safe] = quat[safe, 1:] * (angle[safe] / den[safe])[:, None]
        return np.concatenate([pos, axis, grip], axis=1)

    def close(self) -> None:
        self.engine.close()
