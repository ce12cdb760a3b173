"""`EnginePool`: one native worker pool for engines of different models, EnvPool-style async.

A LIBERO suite has one MuJoCo model per task, hence one `Engine` per task model. Built on one
`EnginePool`, those engines share one set of worker threads (sized to the machine, not per
engine), and a chunk over any mix of their envs runs as ONE native job: the workers take envs of
every engine from one queue, so no core idles while another engine's envs are still running.

    pool = EnginePool(num_threads=16)
    a = Engine.from_robosuite(env_a, 8, pool=pool)              # engines built on the pool
    b = Engine.from_robosuite(env_b, 8, pool=pool)
    pool.send([(a, [0, 1], acts_a), (b, [5], acts_b)], tags=[[0, 1], [2]])   # returns at once
    tags = pool.recv(min_envs=1)          # int64 [m]: envs whose chunk (and frame) is done
    r = pool.result(a, [0, 1], K=8)       # their ChunkResult rows (engine-owned buffers)
    pool.step_chunk([(a, None, acts)])    # synchronous: send + recv of every env

Each env's chunk is exactly `Engine.step_chunk`'s work for it (native OSC control, success
predicates with early stop, its frame rendered at the end), so its state, records and frame are
bit-identical to the synchronous call whatever the completion order or the thread count.

Threads and lifetime (docs/engine.md): a job holds the call lock of every engine it touches while
it runs, so other calls on those engines wait for it, and `engine.close()` stops it at its next
control step (recv then raises EngineClosedError). While `recv` waits, Ctrl-C stops the running
job at its next control step and raises KeyboardInterrupt; queued sends are dropped. An env can
be in flight once: send it again after it was received. Records of an env are valid from its
recv until its next send.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from vlarl_fast._native import C, MujocoError
from vlarl_fast.engine._args import int_arg
from vlarl_fast.engine.control import _RENDER_MODES, ChunkResult

MAX_THREADS = 1024


class EnginePool:
    """Worker threads shared by engines (`Engine(..., pool=pool)`) and async chunk execution.

    Args:
        num_threads: worker threads, an int in [1, 1024] (default: os.cpu_count()).
    """

    def __init__(self, num_threads: int | None = None):
        if num_threads is None:
            num_threads = min(os.cpu_count() or 1, MAX_THREADS)
        self.num_threads = int_arg("num_threads", num_threads, 1, MAX_THREADS)
        self._native = C.ChunkPool(self.num_threads)
        self._k: dict[int, int] = {}  # tag -> K of the send it is in flight with

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Drops queued sends, waits for the running job and stops the dispatcher thread.
        Engines built on the pool keep its worker threads until they are closed."""
        self._native.close()

    @property
    def closed(self) -> bool:
        return self._native.closed

    def __enter__(self) -> "EnginePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def in_flight(self) -> int:
        """Envs sent and not yet received."""
        return self._native.in_flight

    # ------------------------------------------------------------------ async
    def _part(self, engine, env_ids, actions, tags, render: str) -> tuple:
        if getattr(engine, "_pool", None) is not self:
            raise ValueError("send: the engine was not built on this pool "
                             "(Engine(..., pool=pool))")
        engine._check_open("send")
        engine._require_control("send")
        ids = engine._env_ids(env_ids)
        ids = np.arange(engine.num_envs) if ids is None else ids
        acts = engine._chunk_actions(actions, ids.size)
        tags = ids if tags is None else np.asarray(tags, dtype=np.int64).reshape(-1)
        if tags.size != ids.size:
            raise ValueError(f"send: {tags.size} tags for {ids.size} envs")
        renderer = getattr(engine, "_renderer", None)
        if render == "end" and renderer is None:
            render = "none"
        buf = engine._buffers(acts.shape[1], False)
        return (engine._runner, ids, tags, acts, buf.eef_pos, buf.eef_quat, buf.gripper_qpos,
                buf.joint_pos, buf.done, buf.success, buf.steps, _RENDER_MODES[render],
                renderer if render != "none" else None)

    def send(self, parts: Sequence[tuple], tags: Sequence | None = None, *,
             render: str = "end") -> None:
        """Queues one chunk over `parts` and returns at once.

        Args:
            parts: (engine, env_ids or None, actions [n, K, action_dim]) per engine; every part
                has the same K.
            tags: per part, the ids recv reports for its envs ([n] ints, unique among the envs
                in flight); default: the env ids (fine for one engine).
            render: "end" (each env's frame into `engine.frames` after its chunk; engines
                without cameras render nothing) or "none".
        """
        if render not in ("end", "none"):
            raise ValueError(f"render must be 'end' or 'none', got {render!r}")
        parts = list(parts)
        if tags is None:
            tags = [None] * len(parts)
        if len(tags) != len(parts):
            raise ValueError(f"send: {len(tags)} tag lists for {len(parts)} parts")
        native = [self._part(*p, t, render) for p, t in zip(parts, tags)]
        ks = {p[3].shape[1] for p in native}
        if len(ks) > 1:
            raise ValueError(f"send: every part must have the same K, got {sorted(ks)}")
        self._native.send(native)
        for p in native:
            for t in p[2].tolist():
                self._k[t] = p[3].shape[1]

    def recv(self, min_envs: int = 1) -> np.ndarray:
        """Waits until min(min_envs, in_flight) envs have finished; returns the tags of every
        finished env, int64 [m] in completion order (m >= that many). Raises MujocoError naming
        the envs that hit a MuJoCo error (the other finished envs are received)."""
        min_envs = int_arg("min_envs", min_envs, 0)
        tags, failed = self._native.recv(min_envs)
        for t in tags.tolist():
            self._k.pop(t, None)
        if failed:
            raise MujocoError(f"MuJoCo error in env(s) with tags {sorted(failed)} (others "
                              f"stepped; see engine.status_message)")
        return tags

    def result(self, engine, env_ids, k: int) -> ChunkResult:
        """The records of received envs of `engine` from their last K-step chunk (copies)."""
        ids = engine._env_ids(env_ids)
        return engine._buffers(int(k), False).result(
            np.arange(engine.num_envs) if ids is None else ids)

    # ------------------------------------------------------------------ sync
    def step_chunk(self, parts: Sequence[tuple], tags: Sequence | None = None, *,
                   render: str = "end") -> np.ndarray:
        """send + recv of every env of the call (nothing else may be in flight); returns the
        tags in completion order."""
        if self.in_flight:
            raise RuntimeError(f"step_chunk: {self.in_flight} envs are in flight; recv them first")
        self.send(parts, tags, render=render)
        return self.recv(self.in_flight)

    def __repr__(self) -> str:
        return f"EnginePool(num_threads={self.num_threads}, in_flight={self.in_flight})"
