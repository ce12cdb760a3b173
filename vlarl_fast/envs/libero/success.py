"""LIBERO's goal check, exactly as LIBERO decides it, for the native engine's envs.

LIBERO's `_check_success` (after `env.step`) reads, from robosuite's mjData: body and site poses
(`xpos`, `xquat`, `site_xpos`, `site_xmat`), joint positions (`qpos`) and the contact list. After a
control step, the engine's mjData holds the same quantities as LIBERO's: the poses and contacts
of the last physics substep's first stage (computed before its integration) and the integrated
qpos. For each env this module copies those arrays from the engine's zero-copy views into the
scene's LIBERO env, recomputes the contact list from the copied geom poses with `mj_collision`
(a pure function of geom poses and the model), and calls LIBERO's own `_check_success` on it.
So every LIBERO predicate (On, In, Open, Close, TurnOn, TurnOff, Up, ...) is evaluated by
LIBERO's code, on the engine's state.

Goals of joint predicates only are also compiled to native predicates (native_goal.py); the
rest (object-on-object `On`: a horizontal distance norm < 3 cm; `In` / region `On`: LIBERO's own
site-frame arithmetic and parent contacts) have no exact native form and are decided here.
"""

from __future__ import annotations

import mujoco
import numpy as np

from vlarl_fast.envs.libero.scene import LiberoScene

# mjData arrays that LIBERO's predicates and mj_collision read.
SYNC_FIELDS = ("qpos", "xpos", "xquat", "xmat", "xipos", "ximat", "geom_xpos", "geom_xmat",
               "site_xpos", "site_xmat")


class LiberoSuccess:
    """Evaluates a scene's BDDL goal on engine envs (or on any mjData of the same model)."""

    def __init__(self, scene: LiberoScene):
        self.scene = scene
        self._env = scene.robosuite_env
        self._model = scene.model
        self._data = scene.data

    def goal(self) -> list[tuple]:
        return self.scene.goal()

    def _evaluate_synced(self) -> bool:
        mujoco.mj_collision(self._model, self._data)
        return bool(self._env._check_success())

    def check_arrays(self, arrays: dict) -> bool:
        """Success for one state given as {field name: array} (the fields of SYNC_FIELDS)."""
        for name in SYNC_FIELDS:
            getattr(self._data, name)[...] = arrays[name]
        return self._evaluate_synced()

    def check_engine(self, engine, env_ids) -> np.ndarray:
        """[len(env_ids)] bool: LIBERO's success for each env's current engine state."""
        views = [engine.field(name) for name in SYNC_FIELDS]
        targets = [getattr(self._data, name) for name in SYNC_FIELDS]
        out = np.zeros(len(env_ids), dtype=bool)
        for j, i in enumerate(env_ids):
            for view, target in zip(views, targets):
                target[...] = view[i].reshape(target.shape)
            out[j] = self._evaluate_synced()
        return out

    def check_state(self, flat_state) -> bool:
        """Success for a robosuite flattened state [time, qpos, qvel] (as LIBERO's
        set_init_state computes it: mj_forward at that state)."""
        self._env.sim.set_state_from_flattened(np.asarray(flat_state, dtype=np.float64))
        self._env.sim.forward()
        return bool(self._env._check_success())
