"""SimpleVLA-RL's LIBERO rollout, env side, on the native engine: a drop-in for its `env_worker`
processes and queues, and a patch of `RobHFRollout` that swaps it in (docs/integrations.md).

SimpleVLA-RL (PRIME-RL/SimpleVLA-RL, `verl/workers/rollout/rob_rollout.py`) rolls out a batch of
(task_id, trial_id) rows by starting one `env_worker` process per row for every minibatch: each
builds LIBERO's `OffScreenRenderEnv` (256 px, agentview + wrist camera, `seed(0)`), `reset()`,
`set_init_state(init_states[trial_id])`, runs `num_steps_wait` dummy actions `[0]*6 + [-1]`, and
sends `{'type': 'init', 'obs', 'task_description', 'valid_images', 'task_file_name', 'active',
'complete', 'finish_step'}`. Then, per action chunk [K, 7] it receives, it applies
`normalize_gripper_action(a, binarize=True)` and `invert_gripper_action` to each action, calls
`env.step`, counts `finish_step`, and stops inside the chunk at LIBERO's success (`done`) or when
`finish_step >= max_steps` (512 for every LIBERO suite): `active = False, complete = done`. It
sends `{'type': 'step', 'obs', 'active', 'complete', 'finish_step', 'valid_images'}`, `obs` being
LIBERO's observation after the last executed action. The rollout feeds `obs` to `_obs_to_input`
(`agentview_image` and `robot0_eye_in_hand_image` rotated by 180 degrees, JPEG, lanczos to 224;
the state `robot0_eef_pos`, `quat2axisangle(robot0_eef_quat)`, `robot0_gripper_qpos`) and ends
with `complete` and `finish_step` per row.

`SimpleVLAEnvPool` speaks that protocol from one persistent object per rank: `start(suites,
task_ids, trial_ids)` returns the 'init' messages of the rows, `step(actions, indices)` the 'step'
messages of the rows stepped, built on `LiberoChunkEnv` (engines per task, kept across
minibatches; LIBERO's own first control step and success check). Observations are LIBERO's:

- `obs` holds `agentview_image` / `robot0_eye_in_hand_image` ([H, W, 3] uint8, LIBERO's upside-
  down OpenGL rows, as `obs[...]` in env_worker), `robot0_eef_pos` [3], `robot0_eef_quat` [4]
  (x, y, z, w), `robot0_gripper_qpos` [2], `robot0_joint_pos` [7]: what `_obs_to_input` reads
  (LIBERO's other keys, object poses and velocities, are not produced).
- The observation phase. robosuite samples observables on a timer; after LIBERO's
  `set_init_state` every observation an `env.step` returns is sampled after physics substep 24 of
  the control step's 25, not at its end (docs/libero.md, "Observation phase"). The pool
  reproduces it: before the last control step of a chunk (the one whose observation is returned)
  the envs' physics and controller state are saved, that step is run for the sampled number of
  substeps only by a second native controller on the same envs, the cameras are rendered and the
  robot state read, the saved state is restored and the step runs in full. An env that succeeds
  earlier in the chunk is replayed to its success step the same way (once per episode). The
  sampling substep of every step comes from robosuite's own `Observable` timer code
  (`observation_substeps`). Cost: one extra control step of physics per chunk.

Needs `num_steps_wait >= 2` (SimpleVLA-RL uses 10): the first settle step is LIBERO's own code.
"""

from __future__ import annotations

import functools
import os
from collections import defaultdict
from typing import Sequence

import numpy as np

from vlarl_fast.envs.libero.chunk_env import LiberoChunkEnv
from vlarl_fast.envs.libero.registry import NOOP_ACTION, SUITES, get_task
from vlarl_fast.envs.libero.scene import CAMERAS

# RobHFRollout.max_steps for the LIBERO suites, and the recipe's num_steps_wait.
SIMPLEVLA_MAX_STEPS = {suite: 512 for suite in SUITES}
NUM_STEPS_WAIT = 10
RESOLUTION = 256  # get_libero_env(task, model_family, resolution=256)


# ---------------------------------------------------------------------- actions
def postprocess_actions(actions) -> np.ndarray:
    """env_worker's per-action post-processing for a whole batch of chunks, `[..., 7]` ->
    float64: `invert_gripper_action(normalize_gripper_action(a, binarize=True))`, i.e. the
    gripper `g` becomes `-sign(2 * g - 1)` (computed in the input's dtype, as SimpleVLA-RL does;
    `env.step(a.tolist())` then sees float64)."""
    a = np.array(actions, copy=True)
    if a.ndim < 1 or a.shape[-1] != 7 or not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"actions: expected a float array [..., 7], got dtype {a.dtype} shape {a.shape}")
    orig_low, orig_high = 0.0, 1.0
    a[..., -1] = 2 * (a[..., -1] - orig_low) / (orig_high - orig_low) - 1
    a[..., -1] = np.sign(a[..., -1])
    a[..., -1] = a[..., -1] * -1.0
    return a.astype(np.float64)


# ---------------------------------------------------------------------- observation phase
@functools.lru_cache(maxsize=8)
def _observation_substeps(num_steps: int, control_freq: float, model_timestep: float) -> tuple:
    from robosuite.utils.observables import Observable, sensor

    clock = [0.0]

    @sensor(modality="phase")
    def _clock(obs_cache):
        return np.array([clock[0], 0.0])

    obs = Observable("phase", _clock, sampling_rate=control_freq)
    substeps = int((1.0 / control_freq) / model_timestep)  # as robosuite's env.step
    obs.reset()                                # env.reset(): _reset_internal
    obs.update(model_timestep, {}, force=True)  # env.reset(): _get_observations(force_update=True)
    obs.update(model_timestep, {}, force=True)  # set_init_state: _update_observables(force=True)
    out = []
    for step in range(1, num_steps + 1):
        for sub in range(1, substeps + 1):
            clock[0] = step * 1000 + sub
            obs.update(model_timestep, {})
        sampled = int(obs.obs[0])
        out.append(sampled % 1000 if sampled // 1000 == step else 0)
    return tuple(out)


def observation_substeps(num_steps: int, control_freq: float = 20.0,
                         model_timestep: float = 0.002) -> np.ndarray:
    """[num_steps] int: for control steps 1..num_steps after LIBERO's `reset(); set_init_state`,
    the physics substep (1..substeps) after which the observation `env.step` returns was
    sampled; 0 where it was sampled in an earlier step. Computed by robosuite's own `Observable`
    timer code (sampling rate = control frequency, one update per substep, the two forced
    updates of reset and set_init_state). LIBERO (20 Hz, 2 ms): 24 for every step."""
    return np.array(_observation_substeps(int(num_steps), float(control_freq),
                                          float(model_timestep)), dtype=np.int64)


class _Snapshot:
    """Physics state (mjSTATE_INTEGRATION) and controller goals of some envs of one engine."""

    def __init__(self, engine, ids: np.ndarray):
        self.ids = ids
        self.states = engine.get_state(ids)
        goals = [engine.controller_goal(int(i)) for i in ids]
        self.pos = np.stack([g[0] for g in goals])
        self.ori = np.stack([g[1] for g in goals])
        self.grip = np.stack([g[2] for g in goals])

    def take(self, rows) -> "_Snapshot":
        out = object.__new__(_Snapshot)
        out.ids, out.states = self.ids[rows], self.states[rows]
        out.pos, out.ori, out.grip = self.pos[rows], self.ori[rows], self.grip[rows]
        return out

    def restore(self, engine) -> None:
        engine.set_state(self.states, self.ids)  # clears the controller goal: set it back
        engine.set_controller_goal(self.pos, self.ori, self.grip, env_ids=self.ids)


class _PhaseObserver:
    """LIBERO's observation of a control step, taken `s` substeps into it, for envs of one
    `LiberoTaskEngine`, leaving the envs as they were (see the module docstring).

    A second native controller on the engine's envs (its own `ChunkRunner` with `s` substeps
    per control step and no success predicates) runs the step from the saved state and
    controller goals; the cameras are rendered and the robot state read; the state is restored.
    """

    def __init__(self, task_engine):
        self.task_engine = task_engine
        self.engine = task_engine.engine
        self._runners: dict[int, object] = {}
        spec = self.engine.spec
        n, ng, nj = (self.engine.num_envs, len(spec.observation["gripper_qpos"]),
                     len(spec.observation["joint_qpos"]))
        self._buf = dict(eef_pos=np.zeros((n, 1, 3)), eef_quat=np.zeros((n, 1, 4)),
                         gripper_qpos=np.zeros((n, 1, ng)), joint_pos=np.zeros((n, 1, nj)),
                         done=np.zeros((n, 1), np.uint8), success=np.zeros(n, np.uint8),
                         steps=np.zeros(n, np.int32))

    def _runner(self, substeps: int):
        if substeps not in self._runners:
            from vlarl_fast._native import C

            spec = self.engine.spec
            self._runners[substeps] = C.ChunkRunner(self.engine._batch, spec.controller,
                                                    spec.observation, int(substeps),
                                                    spec.initial_joint.tolist())
        return self._runners[substeps]

    def observe(self, ids: np.ndarray, actions: np.ndarray, substeps: np.ndarray) -> dict:
        """Observation of the control step `actions [n, 7]` of envs `ids`, sampled after
        `substeps [n]` physics substeps: {'frames': [n, C, H, W, 3] uint8 (a copy),
        'eef_pos', 'eef_quat' (x, y, z, w), 'gripper_qpos', 'joint_pos'}. The envs end as
        they started."""
        eng, n = self.engine, ids.size
        out = {"frames": np.zeros((n, *eng.frames.shape[1:]), np.uint8)} if eng.frames is not None else {}
        for key in ("eef_pos", "eef_quat", "gripper_qpos", "joint_pos"):
            out[key] = np.zeros((n, self._buf[key].shape[2]))
        snap = _Snapshot(eng, ids)
        b = self._buf
        for s in np.unique(substeps):
            rows = np.nonzero(substeps == s)[0]
            sel = ids[rows]
            if s < 1:
                raise NotImplementedError(
                    "LIBERO's observation of this control step was sampled in an earlier step "
                    "(robosuite's observable timer); the pool reproduces samples within a step only")
            runner = self._runner(int(s))
            for j in rows:
                runner.set_goal(int(ids[j]), snap.pos[j], snap.ori[j].reshape(-1), snap.grip[j])
            runner.run(np.ascontiguousarray(actions[rows, None, :]), sel, b["eef_pos"], b["eef_quat"],
                       b["gripper_qpos"], b["joint_pos"], b["done"], b["success"], b["steps"], 0,
                       None, None)
            for key in ("eef_pos", "eef_quat", "gripper_qpos", "joint_pos"):
                out[key][rows] = b[key][sel, 0]
            if "frames" in out:
                out["frames"][rows] = eng.render(sel)[sel]
        snap.restore(eng)
        return out


# ---------------------------------------------------------------------- the pool
def default_num_threads() -> int:
    """The CPUs this process may use, shared among the ranks of this node (LOCAL_WORLD_SIZE)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


class SimpleVLAEnvPool:
    """SimpleVLA-RL's env_worker protocol for a batch of rows, on persistent native engines.

    pool = SimpleVLAEnvPool(num_steps_wait=10, max_steps=512)
    init = pool.start(["libero_10"] * 8, task_ids, trial_ids)   # 8 'init' messages
    out = pool.step(actions, indices)   # actions [len(indices), K, 7] -> 'step' messages

    Args:
        num_steps_wait: dummy actions after set_init_state (config.num_steps_wait, >= 2).
        max_steps: policy steps per episode (RobHFRollout.max_steps[suite], 512 for LIBERO).
        resolution: camera height and width (get_libero_env's resolution=256).
        cameras: cameras rendered (default both, as OffScreenRenderEnv; with
            num_images_in_input=1 SimpleVLA-RL reads agentview only).
        num_threads: native threads per engine (default: this rank's share of the CPUs).
        scenes: a dict of LIBERO scenes to share ((suite, task index) -> LiberoScene).
        render_options: the engine's rendering options (egl_device, ...).
    Rows are env slots: row i of a batch always runs in slot i; engines are kept for the life
    of the pool (one set per task, grown when a task needs more envs).
    """

    def __init__(self, *, num_steps_wait: int = NUM_STEPS_WAIT, max_steps: int = 512,
                 resolution: int = RESOLUTION, cameras: Sequence[str] = CAMERAS,
                 num_threads: int | None = None, scenes: dict | None = None, **render_options):
        if int(num_steps_wait) < 2:
            raise ValueError(f"num_steps_wait: the pool needs >= 2 (SimpleVLA-RL uses 10), got {num_steps_wait}")
        if int(max_steps) < 1:
            raise ValueError(f"max_steps: expected >= 1, got {max_steps}")
        self.num_steps_wait = int(num_steps_wait)
        self.max_steps = int(max_steps)
        self.resolution = int(resolution)
        self.cameras = list(cameras)
        if not self.cameras:
            raise ValueError("cameras: expected at least one camera (agentview)")
        self.num_threads = default_num_threads() if num_threads is None else int(num_threads)
        self.scenes = {} if scenes is None else scenes
        self._render_options = render_options
        self.env: LiberoChunkEnv | None = None
        self._observers: dict[int, _PhaseObserver] = {}
        self.batch_size = 0
        self.is_valid = False
        self.active = np.zeros(0, bool)
        self.complete = np.zeros(0, bool)
        self.finish_step = np.zeros(0, np.int64)
        self.tasks: list = []

    # ------------------------------------------------------------------ internals
    def _ensure_capacity(self, n: int) -> None:
        if self.env is not None and self.env.num_envs >= n:
            return
        if self.env is not None:
            self.env.close()
        capacity = max(n, 2 * self.env.num_envs if self.env is not None else n)
        self._observers.clear()
        self.env = LiberoChunkEnv(capacity, self.num_threads, cameras=self.cameras,
                                  height=self.resolution, width=self.resolution,
                                  image_convention="opengl", max_steps=10 ** 9,
                                  settle_steps=self.num_steps_wait - 1, scenes=self.scenes,
                                  **self._render_options)

    def _observer(self, task_engine) -> _PhaseObserver:
        key = id(task_engine)
        if key not in self._observers:
            self._observers[key] = _PhaseObserver(task_engine)
        return self._observers[key]

    def _substeps(self, task_engine, global_steps: np.ndarray) -> np.ndarray:
        env = task_engine.scene.robosuite_env
        need = int(global_steps.max())
        table = observation_substeps(max(need, self.num_steps_wait + self.max_steps),
                                     env.control_freq, env.model_timestep)
        return table[global_steps - 1]

    def _groups(self, rows: np.ndarray):
        """(task engine, local env ids, positions in rows) per engine."""
        by = defaultdict(list)
        engines = {}
        for pos, r in enumerate(rows):
            e = self.env.slot_engine[r]
            by[id(e)].append(pos)
            engines[id(e)] = e
        for key, pos in by.items():
            pos = np.asarray(pos, dtype=np.int64)
            yield engines[key], self.env.slot_local[rows[pos]], pos

    def _obs(self, o: dict, j: int) -> dict:
        obs = {f"{cam}_image": o["frames"][j, c] for c, cam in enumerate(self.cameras)}
        obs["robot0_eef_pos"] = o["eef_pos"][j]
        obs["robot0_eef_quat"] = o["eef_quat"][j]
        obs["robot0_gripper_qpos"] = o["gripper_qpos"][j]
        obs["robot0_joint_pos"] = o["joint_pos"][j]
        return obs

    @staticmethod
    def _merge(dst: dict | None, src: dict, rows: np.ndarray, n: int) -> dict:
        if dst is None:
            dst = {k: np.zeros((n, *v.shape[1:]), v.dtype) for k, v in src.items()}
        for k, v in src.items():
            dst[k][rows] = v
        return dst

    # ------------------------------------------------------------------ protocol
    def start(self, task_suite_names, task_ids, trial_ids, *, is_valid: bool = False,
              init_states: Sequence | None = None) -> list[dict]:
        """Starts one episode per row (row i in env slot i) and returns env_worker's 'init'
        messages, in row order. `task_suite_names`: one name for all rows or one per row;
        `init_states` (optional): robosuite flattened states replacing the trials' init states."""
        task_ids = [int(t) for t in np.asarray(task_ids).reshape(-1)]
        trial_ids = [int(t) for t in np.asarray(trial_ids).reshape(-1)]
        n = len(task_ids)
        suites = ([str(task_suite_names)] * n if isinstance(task_suite_names, str)
                  else [str(s) for s in task_suite_names])
        if n == 0 or len(trial_ids) != n or len(suites) != n:
            raise ValueError(f"start: expected equal, non-zero numbers of suites, task ids and trial ids, "
                             f"got {len(suites)}, {n}, {len(trial_ids)}")
        tasks = [get_task(s, t) for s, t in zip(suites, task_ids)]
        if init_states is None:
            states = []
            for task, trial in zip(tasks, trial_ids):
                table = task.init_states()
                if not 0 <= trial < len(table):
                    raise IndexError(f"trial_id {trial}: {task.name} has init states 0..{len(table) - 1}")
                states.append(table[trial])
        else:
            states = [np.asarray(s, dtype=np.float64) for s in init_states]
            if len(states) != n:
                raise ValueError(f"init_states: expected {n} states, got {len(states)}")
        self._ensure_capacity(n)
        rows = np.arange(n)
        self.env.reset(states, tasks, env_ids=rows, render=False)  # settle steps 1..wait-1
        obs = None
        for eng, local, pos in self._groups(rows):
            # The last settle step, observed (dummy action, no success check: env_worker ignores it).
            if eng.native_predicates is not None:
                eng.engine.set_success([], local)
            noop = np.broadcast_to(NOOP_ACTION, (local.size, 7)).astype(np.float64)
            sub = self._substeps(eng, np.full(local.size, self.num_steps_wait))
            obs = self._merge(obs, self._observer(eng).observe(local, noop, sub), pos, n)
            eng.engine.step_chunk(noop[:, None], env_ids=local, render="none")
            if eng.native_predicates is not None:
                eng.engine.set_success(eng.native_predicates, local)
        self.batch_size, self.is_valid, self.tasks = n, bool(is_valid), tasks
        self.active = np.ones(n, bool)
        self.complete = np.zeros(n, bool)
        self.finish_step = np.zeros(n, np.int64)
        messages = []
        for i in range(n):
            o = self._obs(obs, i)
            messages.append({
                "type": "init", "obs": o, "task_description": tasks[i].language,
                "valid_images": [o["agentview_image"][::-1, ::-1]] if is_valid else [],
                "task_file_name": f"{suites[i]}_task_{task_ids[i]}_trial_{trial_ids[i]}",
                "active": True, "complete": False, "finish_step": 0})
        return messages

    def step(self, actions, indices) -> list[dict]:
        """Runs one action chunk per row of `indices` (rows still active) and returns env_worker's
        'step' messages, in the order of `indices`. `actions`: [len(indices), K, 7] (or a list
        of [K, 7] arrays), the policy's actions before the gripper post-processing."""
        rows = np.asarray(indices, dtype=np.int64).reshape(-1)
        if rows.size == 0:
            return []
        if rows.min() < 0 or rows.max() >= self.batch_size or np.unique(rows).size != rows.size:
            raise IndexError(f"indices: expected distinct rows in [0, {self.batch_size}), got {rows.tolist()}")
        if not self.active[rows].all():
            raise ValueError(f"step: rows {rows[~self.active[rows]].tolist()} are not active "
                             f"(env_worker's episode is over)")
        acts = postprocess_actions(np.stack([np.asarray(a) for a in actions]))
        if acts.ndim != 3 or acts.shape[0] != rows.size:
            raise ValueError(f"actions: expected [{rows.size}, K, 7], got {acts.shape}")
        n, K = rows.size, acts.shape[1]
        allowed = np.minimum(K, self.max_steps - self.finish_step[rows])
        executed = np.zeros(n, np.int64)
        success = np.zeros(n, bool)
        obs, videos = None, [[] for _ in range(n)]
        for eng, local, pos in self._groups(rows):
            for a in np.unique(allowed[pos]):
                sel = pos[allowed[pos] == a]
                base = self.num_steps_wait + self.finish_step[rows[sel]]
                run = self._run_valid if self.is_valid else self._run
                o, ex, ok = run(eng, local[allowed[pos] == a], acts[sel], int(a), base, videos, sel)
                obs = self._merge(obs, o, sel, n)
                executed[sel], success[sel] = ex, ok
        self.finish_step[rows] += executed
        self.complete[rows] = success
        self.active[rows] = ~(success | (self.finish_step[rows] >= self.max_steps))
        return [{"type": "step", "obs": self._obs(obs, j), "active": bool(self.active[r]),
                 "complete": bool(self.complete[r]), "finish_step": int(self.finish_step[r]),
                 "valid_images": videos[j] if self.is_valid else []}
                for j, r in enumerate(rows)]

    def _run(self, eng, local, acts, A, base, videos, sel):
        """A steps of a chunk (training): the first A-1 in one call, then the observed last one;
        envs that succeed earlier are replayed to their success step for its observation."""
        observer = self._observer(eng)
        m = local.size
        executed = np.zeros(m, np.int64)
        success = np.zeros(m, bool)
        start = _Snapshot(eng.engine, local) if A > 1 else None
        if A > 1:
            r = eng.step(acts[:, :A - 1], local, render=False)
            executed[:], success[:] = r.executed, r.success
        out = None
        surv = np.nonzero(~success)[0]
        if surv.size:
            ids = local[surv]
            o = observer.observe(ids, acts[surv, A - 1], self._substeps(eng, base[surv] + A))
            r = eng.step(acts[surv, A - 1:A], ids, render=False)
            executed[surv] += r.executed
            success[surv] = r.success
            out = self._merge(out, o, surv, m)
        early = np.nonzero(success & (executed < A) & (executed > 0))[0]  # succeeded at step `executed`
        if early.size:
            end = _Snapshot(eng.engine, local[early])
            start.take(early).restore(eng.engine)
            for k in np.unique(executed[early]):
                g = early[executed[early] == k]
                if k > 1:
                    eng.engine.step_chunk(acts[g, :k - 1], env_ids=local[g], render="none")
                o = observer.observe(local[g], acts[g, k - 1], self._substeps(eng, base[g] + k))
                out = self._merge(out, o, g, m)
            end.restore(eng.engine)
        return out, executed, success

    def _run_valid(self, eng, local, acts, A, base, videos, sel):
        """A steps of a chunk (validation): every step observed, its agentview kept for the
        video as env_worker keeps it (`obs["agentview_image"][::-1, ::-1]`)."""
        observer = self._observer(eng)
        m = local.size
        executed = np.zeros(m, np.int64)
        success = np.zeros(m, bool)
        out = None
        cam = self.cameras.index("agentview") if "agentview" in self.cameras else None
        for k in range(A):
            run = np.nonzero(~success)[0]
            if run.size == 0:
                break
            ids = local[run]
            o = observer.observe(ids, acts[run, k], self._substeps(eng, base[run] + k + 1))
            r = eng.step(acts[run, k:k + 1], ids, render=False)
            executed[run] += r.executed
            success[run] = r.success
            out = self._merge(out, o, run, m)
            if cam is not None:
                for j, row in enumerate(run):
                    videos[sel[row]].append(o["frames"][j, cam][::-1, ::-1])
        return out, executed, success

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None
        self._observers.clear()


# ---------------------------------------------------------------------- the patch
def _generate_minibatch_libero(self, prompts):
    """RobHFRollout._generate_minibatch_libero with the env side on a `SimpleVLAEnvPool` (one per
    rollout object, i.e. per rank, kept across minibatches): the same rows, the same model
    calls (`process_input`, `_generate_one_step`, `_obs_to_input`), the same task records and
    validation videos; no processes, no queues."""
    import torch

    rob = self._vlarl_rob_rollout_module
    self.module.eval()
    meta_info = prompts.meta_info
    n_samples = meta_info.get('n_samples', 1)
    task_id = prompts.batch['task_id'].repeat_interleave(n_samples, dim=0)
    trial_id = prompts.batch['trial_id'].repeat_interleave(n_samples, dim=0)
    task_suite_name = np.repeat(prompts.non_tensor_batch['task_suite_name'], n_samples)
    max_steps = self.max_steps[self.config.task_suite_name]
    batch_size = task_id.size(0)
    is_valid = meta_info.get('n_samples') is None
    global_steps = meta_info.get('global_steps', 0) if is_valid else 0

    pool = simplevla_env_pool(self)
    pool.max_steps = max_steps
    init = pool.start(list(task_suite_name), task_id[:, 0].tolist(), trial_id[:, 0].tolist(),
                      is_valid=is_valid)
    inputs = [self._obs_to_input(m['obs'], is_robotwin=False) for m in init]
    task_descriptions = [m['task_description'] for m in init]
    task_records = [{"active": m['active'], "complete": m['complete'], "finish_step": m['finish_step'],
                     "task_file_name": m['task_file_name']} for m in init]
    valid_video = defaultdict(list)
    if is_valid:
        for m in init:
            valid_video[m['task_file_name']].extend(m['valid_images'])

    step = 0
    vla_history = []
    while step < max_steps:
        active_indices = [i for i, r in enumerate(task_records) if r['active']]
        vla_input = self.process_input(inputs, task_descriptions)
        vla_input.update(meta_info)
        vla_output = self._generate_one_step(vla_input)
        actions = vla_output["action"]
        vla_history.append({"responses": vla_output["responses"], "input_ids": vla_output["input_ids"],
                            "attention_mask": vla_output["attention_mask"],
                            "pixel_values": vla_output["pixel_values"], "action": actions, "step": step})
        new_inputs = inputs.copy()
        if active_indices:
            results = pool.step([np.asarray(actions[idx]) for idx in active_indices], active_indices)
            for idx, result in zip(active_indices, results):
                new_inputs[idx] = self._obs_to_input(result['obs'], is_robotwin=False)
                task_records[idx]['active'] = result['active']
                task_records[idx]['complete'] = result['complete']
                task_records[idx]['finish_step'] = result['finish_step']
                if is_valid:
                    valid_video[task_records[idx]['task_file_name']].extend(result['valid_images'])
        inputs = new_inputs
        step += self.config.action_chunks_len

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if is_valid:
        for task_file, images in valid_video.items():
            complete = any(r['complete'] for r in task_records if r['task_file_name'] == task_file)
            rob.save_rollout_video(images, self.config.experiment_name, task_file, global_steps, complete)
    self.module.train()
    return self._prepare_output_batch(vla_history, task_records, batch_size)


def simplevla_env_pool(rollout) -> SimpleVLAEnvPool:
    """The rollout object's pool, built on first use from its config (num_steps_wait, cameras:
    the wrist camera only when num_images_in_input > 1) and the patch's options."""
    pool = getattr(rollout, "_vlarl_env_pool", None)
    if pool is None:
        cfg = rollout.config
        options = dict(getattr(type(rollout), "_vlarl_pool_options", {}))
        images = cfg.get("num_images_in_input", 1) if hasattr(cfg, "get") else getattr(cfg, "num_images_in_input", 1)
        cameras = CAMERAS if int(images) > 1 else CAMERAS[:1]
        options.setdefault("cameras", cameras)
        pool = SimpleVLAEnvPool(num_steps_wait=int(cfg.num_steps_wait), **options)
        rollout._vlarl_env_pool = pool
    return pool


def patch_rob_hf_rollout(rob_rollout=None, **pool_options):
    """Swaps SimpleVLA-RL's LIBERO env side for `SimpleVLAEnvPool`: replaces
    `RobHFRollout._generate_minibatch_libero` of `rob_rollout` (the module object; default
    `verl.workers.rollout.rob_rollout`). Idempotent; `unpatch_rob_hf_rollout` undoes it.
    `pool_options` go to every pool (num_threads, resolution, egl_device, ...). Call it in the
    process that builds the rollout (SimpleVLA-RL's `ActorRolloutRefWorker._build_rollout`).
    Returns the patched class."""
    if rob_rollout is None:
        try:
            import verl.workers.rollout.rob_rollout as rob_rollout
        except ImportError as exc:
            raise ImportError(f"patch_rob_hf_rollout: SimpleVLA-RL's verl.workers.rollout.rob_rollout "
                              f"is not importable ({exc}); run inside a SimpleVLA-RL checkout "
                              f"or pass the module") from exc
    cls = rob_rollout.RobHFRollout
    if "_vlarl_original_generate_minibatch_libero" not in cls.__dict__:
        cls._vlarl_original_generate_minibatch_libero = cls._generate_minibatch_libero
    cls._generate_minibatch_libero = _generate_minibatch_libero
    cls._vlarl_rob_rollout_module = rob_rollout
    cls._vlarl_pool_options = dict(pool_options)
    return cls


def unpatch_rob_hf_rollout(rob_rollout=None):
    """Restores SimpleVLA-RL's own `_generate_minibatch_libero`."""
    if rob_rollout is None:
        import verl.workers.rollout.rob_rollout as rob_rollout
    cls = rob_rollout.RobHFRollout
    original = cls.__dict__.get("_vlarl_original_generate_minibatch_libero")
    if original is not None:
        cls._generate_minibatch_libero = original
        del cls._vlarl_original_generate_minibatch_libero
    return cls
