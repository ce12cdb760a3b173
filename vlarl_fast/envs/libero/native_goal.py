"""LIBERO goals that the engine can decide natively, exactly: joint-state predicates.

LIBERO's Open / Close / TurnOn / TurnOff read one articulated object's joint positions through
the object's own `is_open` / `is_close` / `turn_on` / `turn_off(qpos)`, each a comparison of qpos
with a constant. For an object with one joint such a predicate is exactly a native
`JointAbove` / `JointBelow` (strict comparisons; `>=` / `<=` become strict against the adjacent
double). The comparison and its constant are read off LIBERO's own function: its value is
probed around each constant of the object's articulation properties, one ulp either side, and
the compiled predicate is then checked against LIBERO's function on a dense grid. Goals made only
of such predicates run natively (`compile_native_goal`); any other predicate (On, In, ...: site-frame
boxes as LIBERO computes them, object-on-object distance norms, contacts with parents) leaves the
whole goal to LIBERO's own check (success.py).
"""

from __future__ import annotations

import math

import numpy as np

from vlarl_fast.engine.predicates import JointAbove, JointBelow
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


def compile_native_goal(scene: LiberoScene):
    """Native predicates equal to the scene's BDDL goal, or None if any predicate has no exact
    native form."""
    env = scene.robosuite_env
    preds = []
    for pred in scene.goal():
        name = str(pred[0]).lower()
        if name not in _JOINT_PREDICATES or len(pred) != 2:
            return None
        state = env.object_states_dict.get(pred[1])
        if state is None:
            return None
        if state.object_state_type == "site":
            if name not in ("open", "close"):
                return None
            joints = list(env.object_sites_dict[pred[1]].joints)
            owner = env.get_object(state.parent_name)
        else:
            joints = list(env.get_object(pred[1]).joints)
            owner = env.get_object(pred[1])
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
        preds.append(JointAbove(joints[0], t) if kind == "above" else JointBelow(joints[0], t))
    return preds or None
