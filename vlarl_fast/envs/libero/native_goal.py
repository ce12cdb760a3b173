"""LIBERO goals decided natively, exactly as LIBERO's own predicate code decides them.

Every predicate kind of the LIBERO suites compiles to native predicates (success_predicates.h),
evaluated after every control step inside the chunk, with native early stop:
- On(a, b), b an object: LIBERO's ObjectState.check_ontop = OnTop(a, b, 0.03) (b.z <= a.z, xy
  distance < 3 cm) and InContact(contact geoms of b, of a) (robosuite's check_contact).
- On(a, region/site b): SiteObject.under = SiteUnder(a, b, b.size) (d = R (p - o) in the
  site's band), and InContact(parent of b, a) when the site's parent is an object.
- In(a, region/site b): check_contact of a site is True; SiteObject.in_box = SiteInBox(a, b,
  b.size) (the |R size| box, lower z bound 1 cm lower).
- Open / Close / TurnOn / TurnOff: joint thresholds (below).
Positions are body_xpos of each object's root body (LIBERO's obj_body_id), site_xpos/site_xmat
of sites, read after the control step as LIBERO reads them after env.step. Only In(a, b) with b
an object (an object's own in_box; no LIBERO suite uses it) has no native form: such a goal is
left to LIBERO's own check (success.py).

LIBERO's Open / Close / TurnOn / TurnOff read one articulated object's joint positions through
the object's own `is_open` / `is_close` / `turn_on` / `turn_off(qpos)`, each a comparison of qpos
with a constant. For an object with one joint such a predicate is exactly a native
`JointAbove` / `JointBelow` (strict comparisons; `>=` / `<=` become strict against the adjacent
double). The comparison and its constant are read off LIBERO's own function: its value is
probed around each constant of the object's articulation properties, one ulp either side, and
the compiled predicate is then checked against LIBERO's function on a dense grid.
"""

from __future__ import annotations

import math

import numpy as np

from vlarl_fast.engine.predicates import (InContact, JointAbove, JointBelow, OnTop, SiteInBox,
                                          SiteUnder)
from vlarl_fast.envs.libero.scene import LiberoScene

# predicate name -> (method of the articulated object, how LIBERO combines several joints)
_JOINT_PREDICATES = {"open": "is_open", "close": "is_close", "turnon": "turn_on",
                     "turnoff": "turn_off"}
_GRID = np.concatenate([np.linspace(-4.0, 4.0, 16001), np.linspace(-0.2, 0.2, 4001)])


def _constants(properties) -> list[float]:
    out = []
    for value in (properties or {}).values():
        for v in (value if isinstance(value, (list, tuple)) else [value]):
            if isinstance(v, (int, float)) and math.isfinite(v):
                out.append(float(v))
    return sorted(set(out))


def _threshold(fn, constants):
    """(kind, threshold) with fn(q) == (q > t) or (q < t) for all probed q, or None."""
    for c in constants:
        lo, hi = math.nextafter(c, -math.inf), math.nextafter(c, math.inf)
        pattern = (bool(fn(lo)), bool(fn(c)), bool(fn(hi)))
        kind, t = {(False, False, True): ("above", c), (False, True, True): ("above", lo),
                   (True, False, False): ("below", c), (True, True, False): ("below", hi)
                   }.get(pattern, (None, None))
        if kind is None:
            continue
        probe = np.concatenate([_GRID, [lo, c, hi, math.nextafter(lo, -math.inf),
                                        math.nextafter(hi, math.inf)]])
        want = np.array([bool(fn(float(q))) for q in probe])
        got = probe > t if kind == "above" else probe < t
        if np.array_equal(want, got):
            return kind, t
    return None


def _joint_predicate(env, name: str, obj: str):
    state = env.object_states_dict.get(obj)
    if state is None:
        return None
    if state.object_state_type == "site":
        if name not in ("open", "close"):
            return None
        joints = list(env.object_sites_dict[obj].joints or [])
        owner = env.get_object(state.parent_name)
    else:
        joints = list(env.get_object(obj).joints)
        owner = env.get_object(obj)
    method = getattr(owner, _JOINT_PREDICATES[name], None)
    if len(joints) != 1 or method is None:
        return None
    try:
        found = _threshold(method, _constants(owner.object_properties.get("articulation")))
    except Exception:  # a predicate that is not a plain comparison of one qpos
        return None
    if found is None:
        return None
    kind, t = found
    return [JointAbove(joints[0], t) if kind == "above" else JointBelow(joints[0], t)]


def _root_body(env, name: str):
    """The MuJoCo body name of an object's obj_body_id (its root body), or None."""
    obj = env.get_object(name)
    if obj is None or name not in getattr(env, "obj_body_id", {}):
        return None
    return env.sim.model.body_id2name(env.obj_body_id[name])


def _contact(model_a, model_b):
    geoms_a, geoms_b = list(model_a.contact_geoms), list(model_b.contact_geoms)
    if not geoms_a or not geoms_b:
        return None  # robosuite's check_contact is then always False
    return InContact(geoms_a, geoms_b, by="geom")


def _placement_predicate(env, name: str, a: str, b: str):
    sa, sb = env.object_states_dict.get(a), env.object_states_dict.get(b)
    if sa is None or sb is None or sa.object_state_type != "object":
        return None
    point = _root_body(env, a)
    if point is None:
        return None
    if sb.object_state_type == "object":
        if name != "on":
            return None  # In(a, object): the object's own in_box
        base = _root_body(env, b)
        contact = _contact(env.get_object(b), env.get_object(a))
        if base is None or contact is None:
            return None
        return [OnTop(point, base, 0.03), contact]
    site = env.object_sites_dict[b]
    try:
        size = np.asarray(site.size, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None
    if size.shape != (3,):
        return None
    if name == "in":  # SiteObjectState.check_contact is True
        return [SiteInBox(point, b, size, 0.01)]
    if not hasattr(site, "under"):
        return []  # LIBERO: check_ontop of such a site is True
    preds = [SiteUnder(point, b, size, 0.005, 0.10)]
    parent = env.get_object(sb.parent_name)
    if parent is not None:
        contact = _contact(parent, env.get_object(a))
        if contact is None:
            return None
        preds.append(contact)
    return preds


def compile_native_goal(scene: LiberoScene):
    """Native predicates equal to the scene's BDDL goal, or None if any predicate has no exact
    native form."""
    env = scene.robosuite_env
    preds = []
    for pred in scene.goal():
        name = str(pred[0]).lower()
        if name in _JOINT_PREDICATES and len(pred) == 2:
            found = _joint_predicate(env, name, pred[1])
        elif name in ("on", "in") and len(pred) == 3:
            found = _placement_predicate(env, name, pred[1], pred[2])
        else:
            found = None
        if found is None:
            return None
        preds += found
    return preds or None


def joint_goal(scene: LiberoScene, name: str, obj: str):
    """LIBERO's Open / Close / TurnOn / TurnOff(obj) as (joint name, "above" | "below",
    threshold): the predicate holds when the joint's qpos is strictly above / below it. None
    when the predicate is not one comparison of one joint."""
    name = str(name).lower()
    if name not in _JOINT_PREDICATES:
        return None
    found = _joint_predicate(scene.robosuite_env, name, obj)
    if not found:
        return None
    (pred,) = found
    return pred.joint, ("below" if isinstance(pred, JointBelow) else "above"), float(pred.threshold)
