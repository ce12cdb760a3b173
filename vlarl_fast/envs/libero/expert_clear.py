"""Clearing a drawer's way: the part of the scripted LIBERO expert that moves a loose object off
the space a drawer is about to open into (expert.py plans it before each drawer opening).

A drawer that opens over or into an object fails in two ways: it pushes the object (a bowl on
the table in front of the cabinet jams it), or, opened, it hangs over the object that the next
step has to pick from above ("open the top drawer and put the bowl inside" with the bowl under
the drawer). So before an opening, each loose object of the scene is checked against the drawer's
keep-out box: the space the drawer sweeps from its current joint position to the goal one
(expert_joint.JointExpert.sweep) and the gripper's stand-off in front of it, 3 cm wider, down
to 8 cm under the handle (where the turned hand reaches); for an object that a later step picks,
the swept space alone, 9 cm wider, at any height (the hand comes down around it later and must
not meet the open drawer). An object in the way is picked and set down on the table at a free
spot, as a placement does it (expert_place.py; done once the gripper is 4 cm over the released
object): on the nearest of rings 12 to 30 cm around it (16 directions) that has one, the spot
furthest from the keep-out box, clear of it and of every other object and fixture by 3 cm, on
the table and within the arm's reach. An object with no free spot is left where it is.
"""

from __future__ import annotations

import mujoco
import numpy as np

from vlarl_fast.envs.libero.expert_common import aabb, aabb_each, object_body
from vlarl_fast.envs.libero.expert_place import RETREAT, PlaceExpert

MARGIN = 0.03  # m around the keep-out box and between objects at the free spot
HAND_REACH = 0.06  # m more around the drawer for an object that is picked later (the hand comes down
# around it)
REACH = (0.35, 0.78)  # m: the spot's horizontal distance from the robot's base


class ClearExpert(PlaceExpert):
    """Moves `obj` to a free table spot when it is in the way of `drawer` (a JointExpert)."""

    def __init__(self, scene, obj: str, drawer, picked_later: bool):
        super().__init__(scene, "on", obj, "table")
        model = scene.model
        self.drawer = drawer
        self.picked_later = picked_later
        self.table_geoms = np.array([g for g in range(model.ngeom) if model.geom_bodyid[g] == self.target_body
                                     and (model.geom_contype[g] or model.geom_conaffinity[g])], dtype=np.int64)
        self.robot_base = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "robot0_base")
        if self.robot_base < 0:
            self.robot_base = object_body(model, "robot0_base")
        others = [g for g in self.obstacle_geoms if g not in set(self.drawer.geoms.tolist())]
        self.other_geoms = np.array(others, dtype=np.int64)

    def setup(self, n: int) -> None:
        super().setup(n)
        self.spot = np.zeros((n, 2))
        self.table_top = np.zeros(n)

    def _keep_out(self, engine, ids) -> np.ndarray:
        box = self.drawer.sweep(engine, ids, front=not self.picked_later)  # [n, 2, 3]
        box[:, 0, :2] -= MARGIN
        box[:, 1, :2] += MARGIN
        if self.picked_later:
            box[:, 0, :2] -= HAND_REACH
            box[:, 1, :2] += HAND_REACH
            box[:, 0, 2] = -np.inf
        return box

    def _object_box(self, engine, ids):
        f = engine.field
        return aabb(self.model, self.obj_geoms, f("geom_xpos")[ids], f("geom_xmat")[ids])

    def satisfied(self, engine, ids) -> np.ndarray:
        """[n] bool: the object is out of the drawer's way (or no free spot exists)."""
        ids = np.asarray(ids, dtype=np.int64)
        obj, zone = self._object_box(engine, ids), self._keep_out(engine, ids)
        inside = ((obj[:, 1] > zone[:, 0]) & (obj[:, 0] < zone[:, 1])).all(axis=1)
        return ~inside | ~np.isfinite(self._spots(engine, ids)[:, 0])

    def _spots(self, engine, ids) -> np.ndarray:
        """[n, 2] the nearest free table spot per env (nan where none is)."""
        f = engine.field
        gx, gm = f("geom_xpos")[ids], f("geom_xmat")[ids]
        obj, zone = self._object_box(engine, ids), self._keep_out(engine, ids)
        table = aabb(self.model, self.table_geoms, gx, gm)
        others = aabb_each(self.model, self.other_geoms, gx, gm) if self.other_geoms.size else np.zeros((ids.size, 0, 2, 3))
        base = f("xpos")[ids][:, self.robot_base, :2]
        out = np.full((ids.size, 2), np.nan)
        angles = np.linspace(0.0, 2 * np.pi, 16, endpoint=False)
        for r in range(ids.size):
            half = 0.5 * (obj[r, 1, :2] - obj[r, 0, :2])
            centre = 0.5 * (obj[r, 1, :2] + obj[r, 0, :2])
            high = others[r][others[r][:, 1, 2] > table[r, 1, 2] + 0.005]  # what stands on the table
            for dist in (0.12, 0.16, 0.20, 0.25, 0.30):
                best = None
                for a in angles:
                    c = centre + dist * np.array([np.cos(a), np.sin(a)])
                    lo, hi = c - half - MARGIN, c + half + MARGIN
                    if (lo < table[r, 0, :2] + 0.05).any() or (hi > table[r, 1, :2] - 0.05).any():
                        continue
                    if not REACH[0] <= np.linalg.norm(c - base[r]) <= REACH[1]:
                        continue
                    if ((hi > zone[r, 0, :2]) & (lo < zone[r, 1, :2])).all():
                        continue
                    if ((hi > high[:, 0, :2]) & (lo < high[:, 1, :2])).all(axis=1).any():
                        continue
                    gap = np.linalg.norm(c - 0.5 * (zone[r, 0, :2] + zone[r, 1, :2]))
                    if best is None or gap > best[0]:
                        best = (gap, c)
                if best is not None:
                    out[r] = best[1]
                    break
        return out

    def start(self, engine, ids, rows) -> None:
        ids, rows = np.asarray(ids, dtype=np.int64), np.asarray(rows, dtype=np.int64)
        f = engine.field
        self.spot[rows] = self._spots(engine, ids)
        self.table_top[rows] = aabb(self.model, self.table_geoms, f("geom_xpos")[ids], f("geom_xmat")[ids])[:, 1, 2]
        super().start(engine, ids, rows)

    def act(self, engine, ids, rows):
        """As a placement, but done 4 cm above the released object (the next step leaves from there)."""
        action, done = super().act(engine, ids, rows)
        z = engine.field("site_xpos")[np.asarray(ids, dtype=np.int64)][:, self.eef_site, 2]
        rows = np.asarray(rows, dtype=np.int64)
        return action, done | ((self.phase[rows] == RETREAT) & (z > self.retreat[rows, 2] - 0.08))

    def _target(self, gx, gm, sx, bx, rows):
        spot = np.where(np.isfinite(self.spot[rows]), self.spot[rows], bx[:, self.obj_body, :2])
        top = self.table_top[rows]
        return spot, top, top
