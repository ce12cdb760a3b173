"""LIBERO's chunk env: `num_envs` env slots over any mix of a suite's tasks, on native engines.

    env = LiberoChunkEnv(64, cameras=["agentview"], max_steps=512)
    frames = env.reset(states, tasks, env_ids)     # states: LIBERO init states [n, 1 + nq + nv]
    result = env.step_chunk(actions)               # actions [n, K, 7] -> ChunkResult

Each LIBERO task is its own MuJoCo model, so a task's envs live in that task's native engines
(`LiberoTaskEngine`): a slot is bound to a (task engine, local env) pair when an episode of a
task starts in it and keeps that binding while later episodes start there with the same task.
Engines are created on first use and never rebuilt: when a task needs more envs than its
engines hold, one more engine is added for it (capacity doubling), so a slot's running episode
is never disturbed by another slot's reset. Every engine is built on one `EnginePool` (one set
of worker threads for the whole suite, sized to the machine), and a chunk over any mix of tasks
runs as one native job on it, each env rendered right after its own chunk.
`send(actions, env_ids)` / `recv(min_envs)` are the asynchronous face (EnvPool-style): send
returns at once, recv returns the envs that finished; `step_chunk` is send + recv.
Implements `vlarl_fast.envs.chunk_env.ChunkEnv`; `LiberoBatch` (batch.py) is the fixed-binding
face used by the gymnasium VectorEnv.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from vlarl_fast.engine.pool import EnginePool
from vlarl_fast.envs.chunk_env import ChunkResult, env_ids_array
from vlarl_fast.envs.libero.registry import SETTLE_STEPS, LiberoTask
from vlarl_fast.envs.libero.scene import CAMERAS, LiberoScene
from vlarl_fast.envs.libero.task_engine import LiberoTaskEngine


def _key(task: LiberoTask) -> tuple[str, int]:
    return (task.suite, task.index)


class LiberoChunkEnv:
    """`num_envs` LIBERO env slots; see the module docstring."""

    def __init__(self, num_envs: int, num_threads: int | None = None, *, cameras=CAMERAS,
                 height: int = 256, width: int = 256, image_convention: str = "openvla",
                 max_steps: int | None = None, settle_steps: int = SETTLE_STEPS,
                 scenes: dict | None = None, **render_options):
        if int(num_envs) < 1:
            raise ValueError(f"num_envs: expected >= 1, got {num_envs}")
        self.num_envs = int(num_envs)
        self.pool = EnginePool(num_threads)  # every task engine's worker threads
        self.num_threads = self.pool.num_threads
        self.cameras = list(cameras or [])
        self.height, self.width = int(height), int(width)
        self._engine_options = dict(cameras=self.cameras or None, height=self.height,
                                    width=self.width, image_convention=image_convention,
                                    max_steps=max_steps, settle_steps=settle_steps,
                                    **render_options)
        self.scenes = {} if scenes is None else scenes
        self._engines: dict[tuple, list[LiberoTaskEngine]] = defaultdict(list)
        self._free: dict[int, list[int]] = {}  # id(engine) -> free local env ids
        self.slot_task: list[LiberoTask | None] = [None] * self.num_envs
        self.slot_engine: list[LiberoTaskEngine | None] = [None] * self.num_envs
        self.slot_local = np.full(self.num_envs, -1, dtype=np.int64)
        self._sent: dict[int, tuple] = {}  # slot -> ("native"/"local", K or steps, render)
        self._ready: list[int] = []  # slots whose chunk ran here, synchronously

    # ------------------------------------------------------------------ slots and engines
    def _add_engine(self, task: LiberoTask, capacity: int) -> LiberoTaskEngine:
        key = _key(task)
        if key not in self.scenes:
            self.scenes[key] = LiberoScene(task)
        engine = LiberoTaskEngine(self.scenes[key], int(capacity), pool=self.pool,
                                  **self._engine_options)
        self._engines[key].append(engine)
        self._free[id(engine)] = list(range(int(capacity)))
        return engine

    def _release(self, slot: int) -> None:
        engine = self.slot_engine[slot]
        if engine is not None:
            self._free[id(engine)].append(int(self.slot_local[slot]))
        self.slot_task[slot] = self.slot_engine[slot] = None
        self.slot_local[slot] = -1

    def _bind(self, slots: Sequence[int], task: LiberoTask) -> None:
        key = _key(task)
        need = len(slots)
        have = sum(len(self._free[id(e)]) for e in self._engines[key])
        if have < need:
            held = sum(e.num_envs for e in self._engines[key])
            self._add_engine(task, min(self.num_envs, max(need - have, held)))
        pending = list(slots)
        for engine in self._engines[key]:
            free = self._free[id(engine)]
            while pending and free:
                slot = pending.pop(0)
                self.slot_task[slot], self.slot_engine[slot] = task, engine
                self.slot_local[slot] = free.pop(0)

    def _by_engine(self, ids: np.ndarray):
        """(engine, local ids, positions in `ids`) per engine touched by `ids`."""
        groups: dict[int, list[int]] = defaultdict(list)
        engines = {}
        for pos, slot in enumerate(ids):
            engine = self.slot_engine[slot]
            if engine is None:
                raise RuntimeError(f"env slot {int(slot)} has no episode: reset it first")
            groups[id(engine)].append(pos)
            engines[id(engine)] = engine
        for key, pos in groups.items():
            pos = np.asarray(pos, dtype=np.int64)
            yield engines[key], self.slot_local[ids[pos]], pos

    def all_engines(self) -> list[LiberoTaskEngine]:
        return [e for group in self._engines.values() for e in group]

    # ------------------------------------------------------------------ ChunkEnv
    def frame_shape(self) -> tuple[int, int, int, int]:
        return (len(self.cameras), self.height, self.width, 3)

    def reset(self, states, tasks: Sequence[LiberoTask], env_ids=None, *,
              render: bool = True) -> np.ndarray | None:
        """Starts episodes of `tasks` in slots `env_ids` (default 0..n-1) from LIBERO init states
        `states` (one [1 + nq + nv] row per env; sizes differ between tasks) with the settle steps; returns their frames
        `[n, num_cameras, H, W, 3]` (None if render=False or there are no cameras)."""
        if self._sent:
            raise RuntimeError(f"reset: {len(self._sent)} envs are in flight; recv them first")
        ids = env_ids_array(np.arange(len(tasks)) if env_ids is None else env_ids, self.num_envs)
        tasks = list(tasks)
        states = [np.asarray(s, dtype=np.float64).reshape(-1) for s in states]
        if len(tasks) != ids.size or len(states) != ids.size:
            raise ValueError(f"reset: expected {ids.size} tasks and {ids.size} states, got {len(tasks)} tasks "
                             f"and {len(states)} states")
        if len(set(ids.tolist())) != ids.size:
            raise ValueError(f"reset: env_ids must be distinct, got {ids.tolist()}")
        moving = [i for i, s in enumerate(ids) if self.slot_task[s] is None
                  or _key(self.slot_task[s]) != _key(tasks[i])]
        for i in moving:
            self._release(int(ids[i]))
        by_task: dict[tuple, list[int]] = defaultdict(list)
        for i in moving:
            by_task[_key(tasks[i])].append(i)
        for rows in by_task.values():
            self._bind([int(ids[i]) for i in rows], tasks[rows[0]])
        for engine, local, pos in self._by_engine(ids):
            rows = [states[p] for p in pos]
            size = 1 + engine.engine.nq + engine.engine.nv
            if any(r.size != size for r in rows):
                raise ValueError(f"reset: {engine.task.name} takes states of {size} values "
                                 f"[time, qpos, qvel], got sizes {sorted({r.size for r in rows})}")
            engine.reset(env_ids=local, init_states=np.stack(rows), render=False)
        return self.render(ids) if render and self.cameras else None

    def step_chunk(self, actions: np.ndarray, env_ids=None, *, render: bool = True) -> ChunkResult:
        """Runs the chunk `actions [n, K, 7]` (see `LiberoTaskEngine.step`) on every env of
        `env_ids` as one native job; frames of the envs still running after it (zeros where
        done). send + recv."""
        if self._sent:
            raise RuntimeError(f"step_chunk: {len(self._sent)} envs are in flight; recv them first")
        ids = env_ids_array(env_ids, self.num_envs)
        self.send(actions, ids, render=render)
        got, result = self.recv(ids.size)
        order = np.argsort(got)[np.searchsorted(np.sort(got), ids)]
        return ChunkResult(executed=result.executed[order], success=result.success[order],
                           done=result.done[order],
                           frames=None if result.frames is None else result.frames[order],
                           episode_steps=result.episode_steps[order])

    def send(self, actions: np.ndarray, env_ids=None, *, render: bool = True) -> None:
        """Starts the chunk `actions [n, K, 7]` on envs `env_ids` and returns at once (envs whose
        goal has no native form, or that are near their step limit, run their chunk here,
        synchronously). An env can be in flight once."""
        ids = env_ids_array(env_ids, self.num_envs)
        acts = np.asarray(actions, dtype=np.float64)
        if acts.ndim == 2:
            acts = acts[:, None, :]
        if acts.ndim != 3 or acts.shape[0] != ids.size:
            raise ValueError(f"actions: expected shape ({ids.size}, K, 7), got {acts.shape}")
        if np.unique(ids).size != ids.size:
            raise ValueError(f"send: env_ids must be distinct, got {ids.tolist()}")
        busy = [int(i) for i in ids if int(i) in self._sent]
        if busy:
            raise ValueError(f"send: envs {busy} are already in flight (recv them first)")
        k = acts.shape[1]
        parts, tags, local_runs = [], [], []
        for engine, local, pos in self._by_engine(ids):
            active = ~engine.done[local]
            native = active & engine.native_chunk(local, k)
            if native.any():
                parts.append((engine.engine, local[native], acts[pos[native]]))
                tags.append(ids[pos[native]])
            local_runs.append((engine, local, pos, native, active & ~native))
        if parts:
            self.pool.send(parts, tags, render="end" if render else "none")
        for engine, local, pos, native, python in local_runs:
            for slot in ids[pos[native]].tolist():
                self._sent[slot] = ("native", k, render)
            executed = np.zeros(local.size, np.int64)
            if python.any():  # per control step, LIBERO's own check (success.py)
                executed[python] = engine.step(acts[pos[python]], local[python],
                                               render=False).executed
            for j in np.nonzero(~native)[0]:
                self._sent[int(ids[pos[j]])] = ("local", int(executed[j]), render)
                self._ready.append(int(ids[pos[j]]))

    def recv(self, min_envs: int = 1) -> tuple[np.ndarray, ChunkResult]:
        """Waits until at least min(min_envs, in flight) envs sent have finished their chunk;
        returns (env ids [m] in completion order, their ChunkResult rows)."""
        got = list(self._ready)
        self._ready.clear()
        flying = self.pool.in_flight
        if flying and (len(got) < min_envs or not got):
            need = max(min_envs - len(got), 0)
            try:
                got += self.pool.recv(min(need, flying)).tolist()
            except BaseException:  # the pool dropped its envs (interrupt, close, MuJoCo error)
                for slot in [i for i, m in self._sent.items() if m[0] == "native"]:
                    del self._sent[slot]
                raise
        ids = np.asarray(got, dtype=np.int64)
        n = ids.size
        out = ChunkResult(executed=np.zeros(n, np.int64), success=np.zeros(n, bool),
                          done=np.zeros(n, bool), frames=None,
                          episode_steps=np.zeros(n, np.int64))
        render = any(self._sent[int(i)][2] for i in got) and bool(self.cameras)
        if render:
            out.frames = np.zeros((n, *self.frame_shape()), np.uint8)
        for engine, local, pos in self._by_engine(ids):
            modes = [self._sent[int(i)] for i in ids[pos]]
            native = np.array([m[0] == "native" for m in modes], dtype=bool)
            if native.any():
                r = self.pool.result(engine.engine, local[native], modes[int(np.argmax(native))][1])
                out.executed[pos[native]] = r.steps_executed
                engine.finish_native(local[native], r.steps_executed, r.success)
            for j in np.nonzero(~native)[0]:
                out.executed[pos[j]] = modes[j][1]
            out.success[pos], out.done[pos] = engine.success[local], engine.done[local]
            out.episode_steps[pos] = engine.episode_steps[local]
            if render:
                running = ~out.done[pos]
                if (running & native).any():
                    out.frames[pos[running & native]] = engine.engine.frames[local[running & native]]
                if (running & ~native).any():
                    out.frames[pos[running & ~native]] = engine.render(local[running & ~native])
        for i in got:
            del self._sent[int(i)]
        return ids, out

    @property
    def in_flight(self) -> int:
        """Envs sent and not yet received."""
        return len(self._sent)

    def render(self, env_ids=None) -> np.ndarray:
        ids = env_ids_array(env_ids, self.num_envs)
        frames = np.zeros((ids.size, *self.frame_shape()), np.uint8)
        for engine, local, pos in self._by_engine(ids):
            frames[pos] = engine.render(local)
        return frames

    def proprio(self, env_ids=None) -> np.ndarray:
        """[n, 8] OpenVLA-OFT's LIBERO state: eef position, eef axis-angle, gripper qpos."""
        ids = env_ids_array(env_ids, self.num_envs)
        out = np.zeros((ids.size, 8))
        for engine, local, pos in self._by_engine(ids):
            out[pos] = engine.proprio(local)
        return out

    def _per_slot(self, name: str, dtype) -> np.ndarray:
        out = np.zeros(self.num_envs, dtype=dtype)
        for slot, engine in enumerate(self.slot_engine):
            if engine is not None:
                out[slot] = getattr(engine, name)[self.slot_local[slot]]
            elif name == "done":
                out[slot] = True
        return out

    @property
    def success(self) -> np.ndarray:
        return self._per_slot("success", bool)

    @property
    def done(self) -> np.ndarray:
        return self._per_slot("done", bool)

    @property
    def episode_steps(self) -> np.ndarray:
        return self._per_slot("episode_steps", np.int64)

    def check_success(self, env_ids=None) -> np.ndarray:
        """LIBERO's own `_check_success` on each env's current state, [n] bool, as `env.step`'s
        `done` sees it (`LiberoSuccess.check_after_step`): MuJoCo recomputes poses and contacts in
        LIBERO's env from the engine's qpos and qvel alone, independently of the engine's
        bookkeeping and of the copied arrays the per-step check uses. The rewards' cross-check
        (`rollout/reward_mismatch`)."""
        ids = env_ids_array(env_ids, self.num_envs)
        out = np.zeros(ids.size, dtype=bool)
        for engine, local, pos in self._by_engine(ids):
            qpos, qvel = engine.engine.qpos, engine.engine.field("qvel")
            for j, i in zip(pos, local):
                out[j] = engine.success_check.check_after_step(qpos[i], qvel[i])
        return out

    def close(self) -> None:
        self.pool.close()
        for engine in self.all_engines():
            engine.close()
        self._sent.clear()
        self._ready.clear()
        self._engines.clear()
        self._free.clear()
        self.slot_task = [None] * self.num_envs
        self.slot_engine = [None] * self.num_envs
        self.slot_local[:] = -1
