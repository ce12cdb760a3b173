"""What the scripted LIBERO experts share: reading LIBERO's objects out of the MuJoCo model
(an object's bodies and collision geoms), world boxes of geoms from the engine's live geom poses,
and turning a wanted end-effector pose into LIBERO's 7-D OSC_POSE action.

Actions: position deltas in input units (1 = 5 cm, robosuite's OSC output_max 0.05 m), rotation
deltas as an axis-angle in input units (1 = 0.5 rad: the goal orientation becomes
R(0.5 * input) @ current), gripper -1 open / +1 closed. A zero rotation part keeps robosuite's
previous goal orientation (osc.py: the goal orientation changes only for a nonzero delta).
"""

from __future__ import annotations

import mujoco
import numpy as np

GAIN = 1.0 / 0.05  # OSC input units per metre of position error (a full unit at 5 cm)
ROT_GAIN = 1.0 / 0.5  # OSC input units per radian of orientation error
MAX_INPUT = 1.0
OPEN, CLOSED = -1.0, 1.0
ROBOT_PREFIXES = ("robot0_", "gripper0_", "mount0_")


class UnsupportedGoal(ValueError):
    pass


def body_subtree(model: mujoco.MjModel, root: int) -> list[int]:
    out = [root]
    for b in range(model.nbody):
        p = b
        while p > 0 and p != root:
            p = model.body_parentid[p]
        if p == root and b != root:
            out.append(b)
    return out


def top_body(model: mujoco.MjModel, body: int) -> int:
    """The child of the world that `body` hangs from (an object's or fixture's root)."""
    while model.body_parentid[body] > 0:
        body = model.body_parentid[body]
    return body


def object_body(model: mujoco.MjModel, name: str) -> int:
    for candidate in (f"{name}_main", name):
        i = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, candidate)
        if i >= 0:
            return i
    raise UnsupportedGoal(f"no body for object {name!r} ({name}_main or {name})")


def collision_geoms(model: mujoco.MjModel, bodies: list[int]) -> np.ndarray:
    sel = np.isin(model.geom_bodyid, bodies) & ((model.geom_contype != 0) | (model.geom_conaffinity != 0))
    return np.nonzero(sel)[0]


def aabb(model, geoms, geom_xpos, geom_xmat) -> np.ndarray:
    """World AABB [n, 2, 3] (min, max) of `geoms` for each env's geom poses [n, ngeom, 3 / 9]."""
    centre = model.geom_aabb[geoms, :3]  # local box centre and half sizes
    half = model.geom_aabb[geoms, 3:]
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    corners = centre[:, None, :] + signs[None] * half[:, None, :]  # [g, 8, 3]
    mats = geom_xmat[:, geoms].reshape(-1, len(geoms), 3, 3)
    world = np.einsum("ngij,gkj->ngki", mats, corners) + geom_xpos[:, geoms][:, :, None, :]
    world = world.reshape(world.shape[0], -1, 3)
    return np.stack([world.min(axis=1), world.max(axis=1)], axis=1)


def aabb_each(model, geoms, geom_xpos, geom_xmat) -> np.ndarray:
    """World AABB of each geom [n, g, 2, 3], as `aabb` computes one box."""
    return np.stack([aabb(model, np.asarray(geoms)[i:i + 1], geom_xpos, geom_xmat) for i in range(len(geoms))], axis=1)


def geom_boxes(model, geoms, geom_xpos, geom_xmat) -> np.ndarray:
    """World AABB of each geom [n, g, 2, 3] (min, max) from its local box (model.geom_aabb)."""
    geoms = np.asarray(geoms, dtype=np.int64)
    centre = model.geom_aabb[geoms, :3]  # local box centre and half sizes
    half = model.geom_aabb[geoms, 3:]
    mats = geom_xmat[:, geoms].reshape(-1, geoms.size, 3, 3)
    mid = np.einsum("ngij,gj->ngi", mats, centre) + geom_xpos[:, geoms]
    ext = np.einsum("ngij,gj->ngi", np.abs(mats), half)
    return np.stack([mid - ext, mid + ext], axis=2)


def axis_angle(rot: np.ndarray) -> np.ndarray:
    """Axis-angle vectors [n, 3] of rotation matrices [n, 3, 3]."""
    rot = np.asarray(rot, dtype=np.float64).reshape(-1, 3, 3)
    cos = np.clip((np.trace(rot, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    vec = np.stack([rot[:, 2, 1] - rot[:, 1, 2], rot[:, 0, 2] - rot[:, 2, 0], rot[:, 1, 0] - rot[:, 0, 1]], 1)
    out = np.zeros((rot.shape[0], 3))
    small = angle < 1e-6
    regular = ~small & (angle < np.pi - 1e-3)
    out[regular] = vec[regular] * (angle[regular] / (2.0 * np.sin(angle[regular])))[:, None]
    flip = ~small & ~regular  # near pi: the axis from the symmetric part
    for i in np.nonzero(flip)[0]:
        sym = (rot[i] + np.eye(3)) / 2.0
        k = int(np.argmax(np.diag(sym)))
        axis = sym[:, k] / np.sqrt(max(sym[k, k], 1e-12))
        out[i] = axis / np.linalg.norm(axis) * angle[i]
    return out


def rotation_input(current: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """[n, 3] rotation inputs turning the end effector's orientation `current` [n, 3, 3] towards
    `wanted` [n, 3, 3] (robosuite's goal = R(0.5 * input) @ current; the error's axis-angle,
    its norm clipped to one input unit)."""
    err = axis_angle(np.einsum("nij,nkj->nik", wanted, current))
    u = err * ROT_GAIN
    norm = np.linalg.norm(u, axis=1, keepdims=True)
    return u / np.maximum(norm / MAX_INPUT, 1.0)


def orientation_error(current: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """[n] angles (rad) between orientations."""
    return np.linalg.norm(axis_angle(np.einsum("nij,nkj->nik", wanted, current)), axis=1)


def position_input(target: np.ndarray, eef: np.ndarray, limit: float = MAX_INPUT) -> np.ndarray:
    return np.clip((target - eef) * GAIN, -limit, limit)
