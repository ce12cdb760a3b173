"""`Engine`: N MuJoCo environments on one shared model, stepped by native threads.

Arrays are described as `name: [shape] dtype`. State arrays returned by the engine are numpy
views of engine-owned memory (no copies): `qpos: [num_envs, nq] float64` is env i's qpos at row i,
live. They stay valid as long as any view or the engine exists, even after `close()`.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Sequence

import mujoco
import numpy as np

from vlarl_fast._native import C, MujocoError
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
        num_envs: number of environments N.
        num_threads: worker threads (default: min(N, os.cpu_count())).

    The engine steps synchronously (`step`); every env ends the call in the state its own
    controls lead to, independent of the thread count.
    """

    def __init__(self, model, num_envs: int, num_threads: int | None = None, *,
                 cameras=None, height: int = 256, width: int = 256, **render_options):
        mj_model = _load_model(model)
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        if num_threads is None:
            num_threads = min(int(num_envs), os.cpu_count() or 1)
        if not isinstance(num_threads, (int, np.integer)) or num_threads < 1:
            raise ValueError(f"num_threads must be a positive int, got {num_threads!r}")
        self._batch = C.EnvBatch(mj_model._address, int(num_envs), int(num_threads))
        self.num_envs = int(num_envs)
        self.num_threads = int(num_threads)
        self.nq, self.nv, self.nu, self.na = (self._batch.nq, self._batch.nv, self._batch.nu,
                                              self._batch.na)
        self.state_spec = FULL_STATE_SPEC
        self._views: dict[str, np.ndarray] = {}
        self._init_rendering(cameras, height, width, **render_options)

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Frees the GL contexts and stops the worker threads (idempotent). Views keep their
        memory; other calls raise afterwards."""
        self._close_rendering()  # contexts are freed on the worker threads, before they stop
        self._batch.close()

    @property
    def closed(self) -> bool:
        return self._batch.closed

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_open(self, what: str) -> None:
        if self._batch.closed:
            raise RuntimeError(f"{what}: the engine is closed")

    # ------------------------------------------------------------------ views
    def field(self, name: str) -> np.ndarray:
        """A named mjData array field of all envs: `[num_envs, rows(, cols)]` view, writable."""
        self._check_open("field")
        view = self._views.get(name)
        if view is None:
            view = self._views[name] = self._batch.field(name)
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
        return self._batch.status_message(int(env_id))

    @property
    def timestep(self) -> float:
        return self._batch.timestep

    # ------------------------------------------------------------------ stepping
    def _env_ids(self, env_ids) -> np.ndarray | None:
        if env_ids is None:
            return None
        ids = np.asarray(env_ids)
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
        arr = np.asarray(ctrl)
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
            nstep: physics steps per env.
            env_ids: envs to step (default all).

        Envs with a non-OK status are skipped. A MuJoCo error in one env marks it ERROR and is
        raised as `MujocoError` after every other env has finished its steps.
        """
        self._check_open("step")
        if not isinstance(nstep, (int, np.integer)) or nstep < 0:
            raise ValueError(f"nstep must be a non-negative int, got {nstep!r}")
        ids = self._env_ids(env_ids)
        rows = self.num_envs if ids is None else ids.size
        failed = self._batch.step(self._controls(ctrl, rows), int(nstep), ids)
        if failed:
            details = "; ".join(f"env {i}: {self.status_message(i)}" for i in failed)
            raise MujocoError(f"MuJoCo error in {len(failed)} env(s) (others stepped): {details}")

    def forward(self, env_ids: Sequence[int] | None = None) -> None:
        """mj_forward on the given envs: derived quantities (xpos, ...) from the current state."""
        self._check_open("forward")
        self._batch.forward(self._env_ids(env_ids))

    # ------------------------------------------------------------------ state
    def state_size(self, spec: int | None = None) -> int:
        return self._batch.state_size(self.state_spec if spec is None else int(spec))

    def get_state(self, env_ids: Sequence[int] | None = None, spec: int | None = None) -> np.ndarray:
        """states: [len(env_ids), state_size] float64, MuJoCo's mj_getState layout for `spec`."""
        self._check_open("get_state")
        return self._batch.get_state(self.state_spec if spec is None else int(spec),
                                     self._env_ids(env_ids))

    def set_state(self, states, env_ids: Sequence[int] | None = None,
                  spec: int | None = None) -> None:
        """Restores states ([state_size] for all given envs, or one row per env).

        Clears the envs' status. Derived quantities are not recomputed (call `forward`), except
        on an engine built by `from_robosuite`, which also accepts robosuite's flattened states
        ([time, qpos, qvel] rows; the rest at MuJoCo's reset values) and starts episodes there
        (forward, controller goal at the current pose, gripper command at rest).
        """
        self._check_open("set_state")
        arr = np.asarray(states)
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"states must be a floating-point array, got dtype {arr.dtype}")
        if not np.isfinite(arr).all():
            raise ValueError("states contain NaN or inf values")
        arr = self._convert_states(arr, spec)  # ControlMixin: robosuite's [time, qpos, qvel]
        ids = self._env_ids(env_ids)
        self._batch.set_state(np.ascontiguousarray(arr, dtype=np.float64),
                              self.state_spec if spec is None else int(spec), ids)
        self._after_set_state(ids)  # ControlMixin: controller state at rest

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.num_threads} threads"
        return f"Engine(num_envs={self.num_envs}, nq={self.nq}, nu={self.nu}, {state})"
