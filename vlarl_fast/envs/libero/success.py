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

    def check_after_step(self, qpos, qvel) -> bool:
        """Success as LIBERO's `env.step` decides it for the state a physics step left
        (`qpos`, `qvel` after `mj_step`), computed afresh by MuJoCo in LIBERO's env.

        `done` reads the poses and contacts of the last substep's first stage, computed before its
        integration, and the integrated qpos. MuJoCo's Euler and implicit integrators move
        positions with the new velocity (qpos = qpos_before + h * qvel), so the positions before
        the step are `mj_integratePos(qpos, qvel, -h)`: the forward pass runs there, then the
        integrated qpos is put back for the joint predicates. (A forward pass at the integrated
        qpos itself sees the poses one substep later; where a contact opens or closes in that
        substep, e.g. a bowl landing on the stove, it disagrees with `done`: tests/libero/
        test_success_after_step.py.)"""
        if self._model.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4:
            raise ValueError("check_after_step: the RK4 integrator's step cannot be undone from "
                             "(qpos, qvel); LIBERO's scenes use Euler")
        after = np.asarray(qpos, dtype=np.float64).reshape(self._model.nq)
        velocity = np.asarray(qvel, dtype=np.float64).reshape(self._model.nv)
        before = after.copy()
        mujoco.mj_integratePos(self._model, before, velocity, -self._model.opt.timestep)
        self._data.qpos[:] = before
        self._data.qvel[:] = velocity
        mujoco.mj_forward(self._model, self._data)
        self._data.qpos[:] = after
        return bool(self._env._check_success())
