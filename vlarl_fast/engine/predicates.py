"""Success predicates evaluated natively after every control step (see success_predicates.h).

An env succeeds when all of its predicates hold; `Engine.set_success` configures them per env.
Names refer to the engine's model; `resolve(model)` turns a predicate into the plain dict the
native runner takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import mujoco
import numpy as np

_KIND = {"region": 0, "contact": 1, "joint_above": 2, "joint_below": 3, "on_top": 4,
         "site_under": 5, "site_in_box": 6}
_OBJ = {None: 0, "body": 1, "site": 2}


def _obj_id(model, kind: str, name: str) -> int:
    obj = {"body": mujoco.mjtObj.mjOBJ_BODY, "site": mujoco.mjtObj.mjOBJ_SITE}.get(kind)
    if obj is None:
        raise ValueError(f"kind: expected 'body' or 'site', got {kind!r}")
    i = mujoco.mj_name2id(model, obj, name)
    if i < 0:
        raise ValueError(f"no {kind} named {name!r} in the model")
    return int(i)


def body_subtree_geoms(model, body_names: Sequence[str]) -> list[int]:
    """Geom ids of the named bodies and all their descendants."""
    roots = {_obj_id(model, "body", b) for b in body_names}
    inside = np.zeros(model.nbody, dtype=bool)
    for b in range(model.nbody):  # parents come before children in MuJoCo's body order
        inside[b] = b in roots or (b > 0 and inside[model.body_parentid[b]])
    return [int(g) for g in range(model.ngeom) if inside[model.geom_bodyid[g]]]


@dataclass(frozen=True)
class InRegion:
    """The position of body/site `point` lies in [low, high] (inclusive), in world coordinates or
    in the frame of body/site `frame` (its position and orientation)."""

    point: str
    low: Sequence[float]
    high: Sequence[float]
    point_kind: str = "body"
    frame: str | None = None
    frame_kind: str = "body"

    def resolve(self, model) -> dict:
        low, high = np.asarray(self.low, float), np.asarray(self.high, float)
        if low.shape != (3,) or high.shape != (3,):
            raise ValueError(f"low/high: expected 3 values each, got {low.shape}, {high.shape}")
        if (low > high).any():
            raise ValueError(f"low must be <= high elementwise, got {low.tolist()} > "
                             f"{high.tolist()}")
        d = {"kind": _KIND["region"], "point_type": _OBJ[self.point_kind],
             "point_id": _obj_id(model, self.point_kind, self.point),
             "frame_type": 0, "frame_id": -1, "low": low.tolist(), "high": high.tolist()}
        if self.frame is not None:
            d["frame_type"] = _OBJ[self.frame_kind]
            d["frame_id"] = _obj_id(model, self.frame_kind, self.frame)
        return d


def _geom_ids(model, names: Sequence[str]) -> list[int]:
    ids = []
    for n in names:
        g = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, n)
        if g < 0:
            raise ValueError(f"no geom named {n!r} in the model")
        ids.append(int(g))
    return ids


@dataclass(frozen=True)
class InContact:
    """Some contact between a geom of `a` and a geom of `b`, as robosuite's check_contact over
    the active contacts. by="body": names of bodies, whose subtrees' geoms count; by="geom":
    geom names (e.g. a robosuite model's contact_geoms)."""

    a: Sequence[str]
    b: Sequence[str]
    by: str = "body"

    def resolve(self, model) -> dict:
        a = [self.a] if isinstance(self.a, str) else list(self.a)
        b = [self.b] if isinstance(self.b, str) else list(self.b)
        if self.by == "body":
            ga, gb = body_subtree_geoms(model, a), body_subtree_geoms(model, b)
        elif self.by == "geom":
            ga, gb = _geom_ids(model, a), _geom_ids(model, b)
        else:
            raise ValueError(f"by: expected 'body' or 'geom', got {self.by!r}")
        if not ga or not gb:
            raise ValueError(f"InContact: {a if not ga else b} have no geoms")
        return {"kind": _KIND["contact"], "geoms_a": ga, "geoms_b": gb}


@dataclass(frozen=True)
class JointAbove:
    """qpos of (1-dof) joint `joint` > threshold."""

    joint: str
    threshold: float

    kind = "joint_above"

    def resolve(self, model) -> dict:
        j = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, self.joint)
        if j < 0:
            raise ValueError(f"no joint named {self.joint!r} in the model")
        if model.jnt_type[j] not in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE):
            raise ValueError(f"joint {self.joint!r}: expected a hinge or slide joint")
        return {"kind": _KIND[self.kind], "qpos_adr": int(model.jnt_qposadr[j]),
                "threshold": float(self.threshold)}


@dataclass(frozen=True)
class JointBelow(JointAbove):
    """qpos of (1-dof) joint `joint` < threshold."""

    kind = "joint_below"


@dataclass(frozen=True)
class OnTop:
    """Body `point` rests over body `base` (LIBERO's ObjectState.check_ontop without its contact
    part): base.z <= point.z and the horizontal distance |(base - point).xy| < radius."""

    point: str
    base: str
    radius: float = 0.03

    def resolve(self, model) -> dict:
        return {"kind": _KIND["on_top"], "point_type": _OBJ["body"],
                "point_id": _obj_id(model, "body", self.point), "frame_type": _OBJ["body"],
                "frame_id": _obj_id(model, "body", self.base), "threshold": float(self.radius)}


def _site_box(kind: str, point: str, site: str, size, below: float, above: float, model) -> dict:
    size = np.asarray(size, dtype=float).reshape(-1)
    if size.shape != (3,) or not np.isfinite(size).all():
        raise ValueError(f"size: expected 3 finite half sizes, got {size.tolist()}")
    return {"kind": _KIND[kind], "point_type": _OBJ["body"],
            "point_id": _obj_id(model, "body", point), "frame_type": _OBJ["site"],
            "frame_id": _obj_id(model, "site", site), "size": size.tolist(),
            "below": float(below), "above": float(above)}


@dataclass(frozen=True)
class SiteUnder:
    """Body `point` lies on the box site `site` (LIBERO's SiteObject.under): d = R (p - o) with
    the site's position o and rotation R, size[2] - below < d.z < size[2] + above and
    |d.x| < size[0], |d.y| < size[1]."""

    point: str
    site: str
    size: Sequence[float]
    below: float = 0.005
    above: float = 0.10

    def resolve(self, model) -> dict:
        return _site_box("site_under", self.point, self.site, self.size, self.below, self.above,
                         model)


@dataclass(frozen=True)
class SiteInBox:
    """Body `point` lies inside the box site `site` (LIBERO's SiteObject.in_box): with
    t = |R size|, o - t < p < o + t strictly, the lower z bound lowered by `below`."""

    point: str
    site: str
    size: Sequence[float]
    below: float = 0.01

    def resolve(self, model) -> dict:
        return _site_box("site_in_box", self.point, self.site, self.size, self.below, 0.0, model)
