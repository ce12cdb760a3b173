"""`Engine`: N MuJoCo environments on one shared model, stepped by native threads.

Arrays are described as `name: [shape] dtype`. State arrays returned by the engine are numpy
views of engine-owned memory (no copies): `qpos: [num_envs, nq] float64` is env i's qpos at row i,
live. They stay valid as long as any view or the engine exists, even after `close()`.

Threads (docs/engine.md, "Lifetime, threads and interrupts"): every method may be called from
any thread; calls that touch env state run one at a time under the engine's call lock.
`close()` stops a running call at its next step boundary (that call raises
`EngineClosedError`), waits for it, then frees the workers; later calls raise
`EngineClosedError`. Ctrl-C (SIGINT) stops a long `step`/`step_chunk`/`render` on the main
thread within about a step and raises KeyboardInterrupt; envs keep the steps they ran.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Sequence

import mujoco
import numpy as np

from vlarl_fast._native import C, MujocoError
from vlarl_fast.engine._args import INT32_MAX, check_fits_in_memory, int_arg
from vlarl_fast.engine.control import ControlMixin
from vlarl_fast.engine.rendering import RenderMixin


class EnvStatus(enum.IntEnum):
    """Values of `Engine.status`."""

    OK = 0
    UNSTABLE = 1  # MuJoCo warned of a bad qpos/qvel/qacc; the env stops stepping until set_state
    ERROR = 2  # a MuJoCo error (mju_error) inside this env; it stops stepping until set_state


# MuJoCo's mj_getState signature for a full restart of the physics (time, qpos, qvel, act,
# plugin state) plus the warm-start acceleration and user inputs, so that a restored env steps
# bit-identically to the one it was saved from.
FULL_STATE_SPEC = int(mujoco.mjtState.mjSTATE_INTEGRATION)
MAX_STATE_SPEC = (1 << int(mujoco.mjtState.mjNSTATE)) - 1  # every mjtState bit
MAX_THREADS = 1024

EngineClosedError = C.EngineClosedError  # RuntimeError subclass: a call on a closed engine


def _load_model(model) -> mujoco.MjModel:
    if isinstance(model, mujoco.MjModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"model XML not found: {path}")
        return mujoco.MjModel.from_xml_path(str(path))
    raise TypeError(f"model must be a mujoco.MjModel or an XML path, got {type(model).__name__}")


class Engine(ControlMixin, RenderMixin):
    """Batched MuJoCo physics on a persistent native thread pool.

    Args:
        model: a `mujoco.MjModel` (copied; the engine owns its copy) or a path to an MJCF file.
        num_envs: number of environments N, an int in [1, 2**31 - 1] (and the envs' memory must
            fit in RAM).
        num_threads: worker threads, an int in [1, 1024] (default: min(N, os.cpu_count())).
        pool: an `EnginePool` whose worker threads the engine shares (then num_threads is the
            pool's); engines of different models on one pool step as one native job
            (vlarl_fast.engine.pool).

    The engine steps synchronously (`step`); every env ends the call in the state its own
    controls lead to, independent of the thread count.
    """

    def __init__(self, model, num_envs: int, num_threads: int | None = None, *,
                 cameras=None, height: int = 256, width: int = 256, pool=None,
                 **render_options):
        mj_model = _load_model(model)
        num_envs = int_arg("num_envs", num_envs, 1)
        if pool is not None:
            if num_threads is not None and int(num_threads) != pool.num_threads:
                raise ValueError(f"num_threads={num_threads} differs from the pool's "
                                 f"{pool.num_threads} threads; pass one or the other")
            num_threads = pool.num_threads
        if num_threads is None:
            num_threads = min(num_envs, os.cpu_count() or 1, MAX_THREADS)
        num_threads = int_arg("num_threads", num_threads, 1, MAX_THREADS)
        if num_envs > 64:  # each env's mjData buffer is written twice while the block is built
            check_fits_in_memory(f"num_envs={num_envs}",
                                 2 * num_envs * mujoco.MjData(mj_model).nbuffer)
        self._pool = pool
        if pool is None:
            self._batch = C.EnvBatch(mj_model._address, num_envs, num_threads)
        else:
            self._batch = C.EnvBatch(mj_model._address, num_envs, pool._native)
        self.num_envs = int(num_envs)
        self.num_threads = int(num_threads)
        self.nq, self.nv, self.nu, self.na = (self._batch.nq, self._batch.nv, self._batch.nu,
                                              self._batch.na)
        self.state_spec = FULL_STATE_SPEC
        self._views: dict[str, np.ndarray] = {}
        self._init_rendering(cameras, height, width, **render_options)

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Stops a call running in another thread at its next step boundary (it raises
        EngineClosedError), waits for it, frees the GL contexts and stops the worker threads.
        Idempotent, callable from any thread. Views keep their memory; other calls raise
        EngineClosedError afterwards."""
        self._batch.close()  # the renderer's contexts go with it (a native close hook)
        self._close_rendering()

    @property
    def closed(self) -> bool:
        return self._batch.closed

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_open(self, what: str) -> None:
        if self._batch.closed:
            raise EngineClosedError(f"{what}: the engine is closed")

    def _env_id(self, name: str, value) -> int:
        """One env id: TypeError for a non-int, IndexError outside [0, num_envs)."""
        try:
            index = int_arg(name, value, 0, self.num_envs - 1)
        except ValueError:
            raise IndexError(f"{name} {value} is out of range [0, {self.num_envs})") from None
        return index

    def _spec(self, spec) -> int:
        if spec is None:
            return self.state_spec
        return int_arg("spec", spec, 0, MAX_STATE_SPEC)

    # ------------------------------------------------------------------ views
    def field(self, name: str) -> np.ndarray:
        """A named mjData array field of all envs: `[num_envs, rows(, cols)]` view, writable.

        Views are not locked: writing them while a call runs in another thread races with it
        (values undefined, never a crash: the memory lives as long as the view)."""
        if not isinstance(name, str):
            raise TypeError(f"field name must be a str, got {type(name).__name__} {name!r}")
        self._check_open("field")
        view = self._views.get(name)
        if view is None:
            try:
                view = self._views[name] = self._batch.field(name)
            except KeyError:  # the name as repr: one line whatever it contains
                raise KeyError(f"mjData has no array field named {name!r} (see "
                               f"Engine.field_names())") from None
        return view

    def field_names(self) -> list[str]:
        return list(self._batch.field_names())

    @property
    def qpos(self) -> np.ndarray:
        """qpos: [num_envs, nq] float64, live view."""
        return self.field("qpos")

    @property
    def qvel(self) -> np.ndarray:
        """qvel: [num_envs, nv] float64, live view."""
        return self.field("qvel")

    @property
    def ctrl(self) -> np.ndarray:
        """ctrl: [num_envs, nu] float64, live view (writes take effect at the next step)."""
        return self.field("ctrl")

    @property
    def time(self) -> np.ndarray:
        """time: [num_envs] float64, read-only view (set it through set_state)."""
        return self._batch.time

    @property
    def status(self) -> np.ndarray:
        """status: [num_envs] uint8 (EnvStatus values), read-only view."""
        return self._batch.status

    def status_message(self, env_id: int) -> str:
        return self._batch.status_message(self._env_id("env_id", env_id))

    @property
    def timestep(self) -> float:
        return self._batch.timestep

    # ------------------------------------------------------------------ stepping
    def _env_ids(self, env_ids) -> np.ndarray | None:
        if env_ids is None:
            return None
        try:
            ids = np.asarray(env_ids)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"env_ids must be a 1-D sequence of ints, got {env_ids!r}") from exc
        if ids.ndim == 0:
            ids = ids.reshape(1)
        if ids.ndim != 1 or ids.size == 0:
            raise ValueError(f"env_ids must be a non-empty 1-D sequence, got shape {ids.shape}")
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"env_ids must be integers, got dtype {ids.dtype}")
        bad = ids[(ids < 0) | (ids >= self.num_envs)]
        if bad.size:
            raise IndexError(f"env id {int(bad[0])} is out of range [0, {self.num_envs})")
        if np.unique(ids).size != ids.size:
            raise ValueError(f"env_ids contains duplicates: {ids.tolist()}")
        return ids.astype(np.int64, copy=False)

    def _controls(self, ctrl, rows: int) -> np.ndarray | None:
        if ctrl is None:
            return None
        try:
            arr = np.asarray(ctrl)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"ctrl must be a [{rows}, {self.nu}] float array: {exc}") from exc
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"ctrl must be a floating-point array, got dtype {arr.dtype}")
        if arr.shape != (rows, self.nu):
            raise ValueError(f"ctrl must have shape ({rows}, {self.nu}), got {arr.shape}")
        finite = np.isfinite(arr)
        if not finite.all():
            bad_rows = np.nonzero(~finite.all(axis=1))[0]
            raise ValueError(f"ctrl has NaN or inf values in rows {bad_rows.tolist()}")
        return np.ascontiguousarray(arr, dtype=np.float64)

    def step(self, ctrl=None, nstep: int = 1, env_ids: Sequence[int] | None = None) -> None:
        """Applies controls and runs `nstep` mj_step per env, natively, with the GIL released.

        Args:
            ctrl: [len(env_ids) or num_envs, nu] float, or None to keep the current `ctrl`.
            nstep: physics steps per env, an int in [0, 2**31 - 1].
            env_ids: envs to step (default all).

        Envs with a non-OK status are skipped. A MuJoCo error in one env marks it ERROR and is
        raised as `MujocoError` after every other env has finished its steps. KeyboardInterrupt
        (main thread) or close() from another thread (EngineClosedError) stop every env after
        its current mj_step; the envs keep the steps they ran (`time` says how far).
        """
        self._check_open("step")
        nstep = int_arg("nstep", nstep, 0, INT32_MAX)
        ids = self._env_ids(env_ids)
        rows = self.num_envs if ids is None else ids.size
        failed = self._batch.step(self._controls(ctrl, rows), nstep, ids)
        if failed:
            details = "; ".join(f"env {i}: {self.status_message(i)}" for i in failed)
            raise MujocoError(f"MuJoCo error in {len(failed)} env(s) (others stepped): {details}")

    def forward(self, env_ids: Sequence[int] | None = None) -> None:
        """mj_forward on the given envs: derived quantities (xpos, ...) from the current state."""
        self._check_open("forward")
        self._batch.forward(self._env_ids(env_ids))

    # ------------------------------------------------------------------ state
    def state_size(self, spec: int | None = None) -> int:
        return self._batch.state_size(self._spec(spec))

    def get_state(self, env_ids: Sequence[int] | None = None, spec: int | None = None) -> np.ndarray:
        """states: [len(env_ids), state_size] float64, MuJoCo's mj_getState layout for `spec`."""
        self._check_open("get_state")
        return self._batch.get_state(self._spec(spec), self._env_ids(env_ids))

    def set_state(self, states, env_ids: Sequence[int] | None = None,
                  spec: int | None = None) -> None:
        """Restores states ([state_size] for all given envs, or one row per env).

        Clears the envs' status. Derived quantities are not recomputed (call `forward`), except
        on an engine built by `from_robosuite`, which also accepts robosuite's flattened states
        ([time, qpos, qvel] rows; the rest at MuJoCo's reset values) and starts episodes there
        (forward, controller goal at the current pose, gripper command at rest).
        """
        self._check_open("set_state")
        spec_code = self._spec(spec)
        try:
            arr = np.asarray(states)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"states must be a float array [state_size] or [n, state_size]: "
                            f"{exc}") from exc
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"states must be a floating-point array, got dtype {arr.dtype}")
        if arr.ndim not in (1, 2):
            raise ValueError(f"states must have shape [{self.state_size(spec_code)}] or "
                             f"[n, {self.state_size(spec_code)}], got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("states contain NaN or inf values")
        arr = self._convert_states(arr, spec)  # ControlMixin: robosuite's [time, qpos, qvel]
        ids = self._env_ids(env_ids)
        self._batch.set_state(np.ascontiguousarray(arr, dtype=np.float64), spec_code, ids)
        self._after_set_state(ids)  # ControlMixin: controller state at rest

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.num_threads} threads"
        return f"Engine(num_envs={self.num_envs}, nq={self.nq}, nu={self.nu}, {state})"
