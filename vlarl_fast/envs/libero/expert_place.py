"""The pick-and-place part of the scripted LIBERO expert: one `On(obj, target)` / `In(obj, region)`
of the task's BDDL goal (expert.py sequences the goal's parts).

From the live simulator state of each env (object poses and collision-geom extents, region sites,
the end effector), a closed-loop controller produces LIBERO's 7-D actions: OSC_POSE position
deltas in input units (1 = 5 cm), zero rotation (robosuite's OSC then keeps the goal orientation,
the home pose's downward gripper), gripper -1 open / +1 closed, as the policy outputs them.

Phases per env: approach above the object's grasp point, descend, close the gripper, lift above
every obstacle between here and the target, carry over the target, lower until the object is just
above the target's surface (or the descent stalls on it), open the gripper, retreat upwards.
The grasp point is the object's collision-geom box centre at most 3 cm under its top; objects
wider than the gripper opens (bowls, plates) are taken by the rim: the point offset towards the
rim along the fingers' closing axis. No constant is tuned to an init state: every target comes
from the goal's objects as they lie in that episode.
"""

from __future__ import annotations

import mujoco
import numpy as np

from vlarl_fast.envs.libero.expert_common import (CLOSED, GAIN, MAX_INPUT, OPEN, ROBOT_PREFIXES, UnsupportedGoal,
                                                  aabb, body_subtree, collision_geoms, object_body, top_body)

GRIPPER_SPAN = 0.075  # widest object the open Panda gripper takes across (m)
GRASP_DEPTH = 0.03  # grasp point at most this far under the object's top
CLEARANCE = 0.09  # carried object's bottom above the highest obstacle on its way
CORRIDOR = 0.07  # obstacles within this horizontal distance of the straight way count
RELEASE_GAP = 0.015  # object bottom above the target surface when the gripper opens
GRASP_STEPS = 14  # control steps the gripper takes to close on the object
RELEASE_STEPS = 10

APPROACH, DESCEND, GRASP, LIFT, CARRY, LOWER, RELEASE, RETREAT = range(8)
PHASES = ("approach", "descend", "grasp", "lift", "carry", "lower", "release", "retreat")


class PlaceExpert:
    """Pick `obj` and set it down On / In `target` (see the module docstring)."""

    def __init__(self, scene, predicate: str, obj: str, target: str):
        model = scene.model
        self.model = model
        self.predicate = predicate.lower()
        self.obj_body = object_body(model, obj)
        self.obj_geoms = collision_geoms(model, body_subtree(model, self.obj_body))
        self.target_site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, target)
        if self.target_site >= 0:  # a region: its site; surfaces are those of the site's top-level body
            top = top_body(model, model.site_bodyid[self.target_site])
            self.target_geoms = collision_geoms(model, body_subtree(model, top))
            self.target_body = -1
        else:
            self.target_body = object_body(model, target)
            self.target_geoms = collision_geoms(model, body_subtree(model, self.target_body))
        if self.target_geoms.size == 0:
            raise UnsupportedGoal(f"{scene.task.name}: target {target!r} has no collision geoms")
        self.obstacle_geoms = np.array([g for g in collision_geoms(model, list(range(1, model.nbody)))
                                        if not model.body(model.geom_bodyid[g]).name.startswith(ROBOT_PREFIXES)
                                        and model.body(model.geom_bodyid[g]).name != "table"
                                        and g not in set(self.obj_geoms.tolist())], dtype=np.int64)
        self.eef_site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "gripper0_grip_site")
        self.fingers = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, n)
                        for n in ("gripper0_leftfinger", "gripper0_rightfinger")]
        self.setup(0)

    # ------------------------------------------------------------------ state
    def _read(self, engine, ids):
        f = engine.field
        return f("geom_xpos")[ids], f("geom_xmat")[ids], f("site_xpos")[ids], f("xpos")[ids]

    def setup(self, n: int) -> None:
        """Per-env state for `n` env rows (rows index the arrays; `start` begins an episode)."""
        self.grasp_offset = np.zeros((n, 3))  # grasp point - object AABB centre (x, y); z absolute below
        self.grasp_depth = np.zeros(n)
        self.phase = np.zeros(n, np.int64)
        self.count = np.zeros(n, np.int64)
        self.last_z = np.zeros(n)
        self.stall = np.zeros(n, np.int64)
        self.retreat = np.zeros((n, 3))

    def start(self, engine, ids, rows) -> None:
        """Begins the pick-and-place of env ids `ids` (rows `rows`) from their current state."""
        ids, rows = np.asarray(ids, dtype=np.int64), np.asarray(rows, dtype=np.int64)
        n = ids.size
        gx, gm, sx, bx = self._read(engine, ids)
        obj = aabb(self.model, self.obj_geoms, gx, gm)
        eef = sx[:, self.eef_site]
        centre = obj.mean(axis=1)
        width = obj[:, 1, :2] - obj[:, 0, :2]
        # the fingers' closing axis (horizontal): left finger - right finger
        fx = bx[:, self.fingers[0]] - bx[:, self.fingers[1]]
        axis = fx[:, :2] / np.maximum(np.linalg.norm(fx[:, :2], axis=1, keepdims=True), 1e-9)
        offset = np.zeros((n, 3))
        wide = width.min(axis=1) > GRIPPER_SPAN
        radius = 0.5 * np.abs(width @ np.eye(2)).mean(axis=1) if n else np.zeros(0)
        # rim grasp: towards the rim along the closing axis, on the robot's side of the object
        side = np.sign(np.einsum("ni,ni->n", (eef - centre)[:, :2], axis))
        side[side == 0] = 1.0
        offset[wide, :2] = (axis * (side * (radius - 0.02))[:, None])[wide]
        height = obj[:, 1, 2] - obj[:, 0, 2]
        depth = np.minimum(GRASP_DEPTH, 0.5 * height)
        depth[wide] = np.minimum(0.02, 0.5 * height[wide])
        self.grasp_offset[rows] = offset
        self.grasp_depth[rows] = depth
        self.phase[rows] = APPROACH
        self.count[rows] = 0
        self.last_z[rows] = eef[:, 2]
        self.stall[rows] = 0
        self.retreat[rows] = 0.0

    def _target(self, gx, gm, sx, bx, rows):
        """Per env: the target's (x, y), the surface the object is set down on, the target's top.
        LIBERO's On(a, b) of two objects compares their body positions (horizontal distance
        < 3 cm), so an object target's place is its body position; a region's is its site."""
        tgt = aabb(self.model, self.target_geoms, gx, gm)
        if self.target_site >= 0:  # a region: its site marks the place and the surface height
            return sx[:, self.target_site, :2], sx[:, self.target_site, 2], tgt[:, 1, 2]
        return bx[:, self.target_body, :2], tgt[:, 1, 2], tgt[:, 1, 2]

    def _obstacle_top(self, gx, gm, start, end, default) -> np.ndarray:
        """Per env: the highest top among obstacle geoms within CORRIDOR of the straight way from
        `start` to `end` (x, y), or `default` where none is."""
        out = np.array(default, dtype=np.float64)
        if self.obstacle_geoms.size == 0:
            return out
        # per-geom world boxes [n, g, 2, 3]
        boxes = np.stack([aabb(self.model, self.obstacle_geoms[i:i + 1], gx, gm)
                          for i in range(self.obstacle_geoms.size)], axis=1)
        path = start[:, None] + np.linspace(0.0, 1.0, 12)[None, :, None] * (end - start)[:, None]  # [n, 12, 2]
        lo, hi = boxes[:, :, 0, :2] - CORRIDOR, boxes[:, :, 1, :2] + CORRIDOR  # [n, g, 2]
        near = ((path[:, None] >= lo[:, :, None]) & (path[:, None] <= hi[:, :, None])).all(-1).any(-1)  # [n, g]
        tops = np.where(near, boxes[:, :, 1, 2], -np.inf).max(axis=1)
        return np.maximum(out, tops)

    def act(self, engine, ids, rows):
        """Actions [n, 7] of env ids `ids` (rows `rows`) and whether each has finished (retreated
        above the placed object)."""
        ids, rows = np.asarray(ids, dtype=np.int64), np.asarray(rows, dtype=np.int64)
        gx, gm, sx, bx = self._read(engine, ids)
        eef = sx[:, self.eef_site]
        obj = aabb(self.model, self.obj_geoms, gx, gm)
        obj_centre = obj.mean(axis=1)
        txy, surface, ttop = self._target(gx, gm, sx, bx, rows)
        obj_ref = bx[:, self.obj_body, :2]  # the object's body position: what LIBERO's predicates read
        obstacles = self._obstacle_top(gx, gm, obj_ref, txy, ttop)
        phase = self.phase[rows]
        count = self.count[rows]
        action = np.zeros((ids.size, 7))
        target = eef.copy()
        grip = np.full(ids.size, OPEN)
        grasp_xy = obj_centre[:, :2] + self.grasp_offset[rows, :2]
        grasp_z = obj[:, 1, 2] - self.grasp_depth[rows]
        bottom_below_eef = eef[:, 2] - obj[:, 0, 2]  # valid once held
        carry_z = np.maximum(obstacles, ttop) + CLEARANCE + np.maximum(bottom_below_eef, 0.0)
        for j in range(ids.size):
            p = phase[j]
            if p == APPROACH:
                target[j] = [*grasp_xy[j], max(grasp_z[j] + 0.08, eef[j, 2] if np.linalg.norm(eef[j, :2] - grasp_xy[j]) > 0.05 else grasp_z[j] + 0.08)]
                if np.linalg.norm(eef[j, :2] - grasp_xy[j]) < 0.008 and abs(eef[j, 2] - target[j, 2]) < 0.03:
                    p = DESCEND
            if p == DESCEND:
                target[j] = [*grasp_xy[j], grasp_z[j]]
                if np.linalg.norm(eef[j] - target[j]) < 0.008 or count[j] > 40:
                    p, count[j] = GRASP, 0
            if p == GRASP:
                target[j] = [*grasp_xy[j], grasp_z[j]]
                grip[j] = CLOSED
                count[j] += 1
                if count[j] >= GRASP_STEPS:
                    p, count[j] = LIFT, 0
            if p == LIFT:
                target[j] = [eef[j, 0], eef[j, 1], carry_z[j]]
                grip[j] = CLOSED
                if eef[j, 2] > carry_z[j] - 0.02:
                    p, count[j] = CARRY, 0
            if p == CARRY:
                xy = txy[j] + (eef[j, :2] - obj_ref[j])
                target[j] = [*xy, carry_z[j]]
                grip[j] = CLOSED
                count[j] += 1
                err = np.linalg.norm(eef[j, :2] - xy)
                if err < 0.01 or (count[j] > 80 and err < 0.025):
                    p, count[j] = LOWER, 0
            if p == LOWER:
                xy = txy[j] + (eef[j, :2] - obj_ref[j])
                z = eef[j, 2] - (obj[j, 0, 2] - (surface[j] + RELEASE_GAP))
                # descend only while over the place (a fast descent drags the arm sideways)
                off = np.linalg.norm(eef[j, :2] - xy)
                target[j] = [*xy, z if off < 0.006 else max(z, eef[j, 2] - 0.01 * (off < 0.015))]
                grip[j] = CLOSED
                count[j] += 1
                moved = self.last_z[rows[j]] - eef[j, 2]
                descending = target[j, 2] < eef[j, 2] - 0.01
                self.stall[rows[j]] = self.stall[rows[j]] + 1 if descending and moved < 0.0005 and count[j] > 5 else 0
                if abs(eef[j, 2] - z) < 0.006 or self.stall[rows[j]] >= 4 or count[j] > 80:
                    p, count[j] = RELEASE, 0
            if p == RELEASE:
                target[j] = eef[j]
                grip[j] = OPEN
                count[j] += 1
                if count[j] >= RELEASE_STEPS:
                    p = RETREAT
                    self.retreat[rows[j]] = eef[j] + np.array([0.0, 0.0, 0.12])
            if p == RETREAT:
                target[j] = self.retreat[rows[j]]
                grip[j] = OPEN
            phase[j] = p
        self.phase[rows] = phase
        self.count[rows] = count
        self.last_z[rows] = eef[:, 2]
        action[:, :3] = np.clip((target - eef) * GAIN, -MAX_INPUT, MAX_INPUT)
        slow = np.isin(phase, (DESCEND, LOWER))  # the last centimetres at half speed: no swing
        action[slow, :3] *= 0.5
        held = np.isin(phase, (LIFT, CARRY))  # gentle with the object in hand: it slips otherwise
        action[held, :3] = np.clip(action[held, :3], -0.6, 0.6)
        action[:, 6] = grip
        done = (phase == RETREAT) & (eef[:, 2] > self.retreat[rows, 2] - 0.02)
        return action, done
