"""The articulated-object parts of the scripted LIBERO expert: `Open` / `Close` of a drawer and
`TurnOn` / `TurnOff` of a knob (expert.py sequences the goal's parts).

What decides the predicate is LIBERO's own: the object's joint and the comparison its
`is_open` / `is_close` / `turn_on` / `turn_off(qpos)` makes (read off LIBERO's function by
native_goal.joint_goal, e.g. the wooden cabinet's drawer is open at qpos < -0.14, the flat stove
is on at knob qpos >= 0.5). The expert moves the joint a margin past that threshold (within the
joint's range); from the joint's world axis and the sign of the comparison it knows which way
the part has to move. Everything else comes from the model and the live state of each env:

- A drawer (a slide joint): its handle is the collision geom of the drawer's bodies that sticks
  out furthest along the drawer's opening direction. Open: the gripper turns to point into the
  cabinet with its fingers closing vertically (a downward gripper cannot reach a handle with
  another drawer above it), sets its fingers 1.2 cm clear of the handle (wide open they would
  touch the handles above and below; the finger command moves 5 mm a control step and holds on
  a zero input), stops 10 cm in front of the handle, moves onto it, pinches it and pulls along
  the joint axis until the joint is past the threshold; a pinch that slips (the handle 3.5 cm
  away from the gripper) is let go and taken again (3 tries). Then it lets go, backs off and
  returns to the pose and orientation it started from (the arm's posture comes back with it;
  a placement from a drawer-side posture runs into joint limits). Close: the same with the
  gripper closed and its fingers closing horizontally (a thin hand, clear of the table under a
  bottom drawer), pushing the handle in. Over or behind the drawer (after a placement into it)
  the gripper first moves out in front of it, then down.
- A knob (a hinge joint about a vertical axis): the closed, downward gripper goes down beside
  the knob's lever (the highest collision geoms of the knob's bodies; the push point at 0.7 of
  their reach from the axis) on the side away from the turning direction, then its target is
  that point of the lever as the knob has turned, 1 cm past the lever's centre line in the
  turning direction: it pushes the lever round, square to it, until the joint is past the
  threshold; then it rises.

Doors on hinges (a microwave's Open / Close) are not handled: `UnsupportedGoal`.
"""

from __future__ import annotations

import mujoco
import numpy as np

from vlarl_fast.envs.libero.expert_common import (CLOSED, OPEN, UnsupportedGoal, body_subtree, collision_geoms,
                                                  geom_boxes, orientation_error, position_input, rotation_input)

SLIDE_MARGIN = 0.012  # m past LIBERO's threshold (within the joint range)
HINGE_MARGIN = 0.3  # rad past LIBERO's threshold
STANDOFF = 0.10  # gripper stop in front of the handle before moving onto it (m)
PINCH_STEPS = 8
PINCH_ROOM = 0.012  # m between each open finger and the handle before the pinch (a wide-open
# gripper would touch the drawers' handles above and below)
SLIP = 0.035  # m between the gripper and the handle's centre: the pinch has slipped
MAX_TRIES = 3
RELEASE_STEPS = 5
PULL_LEAD = 0.08  # m the gripper's target leads the handle along the joint (a full-input pull)
PUSH_DEPTH = 0.01  # m past the lever's centre line the finger's target lies while turning a knob
KNOB_RADIUS = 0.7  # the push point along the lever, a fraction of its reach from the axis
FINGER_HALF = 0.015  # half the closed fingers' thickness (m)

TO_FRONT, ONTO, PINCH, MOVE, RELEASE, BACK, RESTORE, DONE, RETRY = range(9)  # drawers
ABOVE, DOWN, TURN, RISE = range(4)  # knobs


def _rot(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotation matrices [n, 3, 3] about unit `axis` [n, 3] by `angle` [n]."""
    k = axis
    kx = np.zeros((k.shape[0], 3, 3))
    kx[:, 0, 1], kx[:, 0, 2], kx[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    kx[:, 1, 0], kx[:, 2, 0], kx[:, 2, 1] = k[:, 2], -k[:, 1], k[:, 0]
    s, c = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3)[None] + s * kx + (1 - c) * (kx @ kx)


class JointExpert:
    """Moves one articulated part (a drawer's slide joint, a knob's hinge) until LIBERO's
    predicate on it holds (see the module docstring)."""

    def __init__(self, scene, predicate: str, target: str):
        from vlarl_fast.envs.libero.native_goal import joint_goal

        model = scene.model
        self.model = model
        self.predicate = predicate.lower()
        found = joint_goal(scene, self.predicate, target)
        if found is None:
            raise UnsupportedGoal(f"{scene.task.name}: {predicate}({target}) is not one comparison of one joint")
        joint_name, kind, threshold = found
        j = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, joint_name)
        self.joint, self.qadr = j, int(model.jnt_qposadr[j])
        self.body = int(model.jnt_bodyid[j])
        self.sign = 1.0 if kind == "above" else -1.0  # the way qpos has to go
        lo, hi = model.jnt_range[j] if model.jnt_limited[j] else (-np.inf, np.inf)
        self.threshold = float(threshold)
        self.slide = model.jnt_type[j] == mujoco.mjtJoint.mjJNT_SLIDE
        if not self.slide and model.jnt_type[j] != mujoco.mjtJoint.mjJNT_HINGE:
            raise UnsupportedGoal(f"{scene.task.name}: {predicate}({target}) moves a joint that is neither slide nor hinge")
        if not self.slide and self.predicate in ("open", "close"):
            raise UnsupportedGoal(f"{scene.task.name}: {predicate}({target}) is a door on a hinge (not handled)")
        margin = SLIDE_MARGIN if self.slide else HINGE_MARGIN
        goal = self.threshold + self.sign * margin
        room = 0.2 * (hi - lo) if np.isfinite(hi - lo) else margin
        self.goal = float(np.clip(goal, lo + min(0.003, room), hi - min(0.003, room)))
        if self.sign * (self.goal - self.threshold) <= 0:  # the range ends at the threshold: go to its end
            self.goal = float(hi if self.sign > 0 else lo)
        self.geoms = collision_geoms(model, body_subtree(model, self.body))
        if self.geoms.size == 0:
            raise UnsupportedGoal(f"{scene.task.name}: {predicate}({target}): the moving part has no collision geoms")
        self.eef_site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "gripper0_grip_site")
        # the left finger's position actuator: its ctrl is the finger opening robosuite commands
        self.finger_actuator = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, "gripper0_gripper_finger_joint1")
        self.setup(0)

    # ------------------------------------------------------------------ state
    def setup(self, n: int) -> None:
        self.phase = np.zeros(n, np.int64)
        self.count = np.zeros(n, np.int64)
        self.home_ori = np.tile(np.eye(3), (n, 1, 1))  # orientation at the start (restored at the end)
        self.home_pos = np.zeros((n, 3))  # drawers: where the gripper was at the start (returned to)
        self.ori = np.tile(np.eye(3), (n, 1, 1))  # the orientation while at the part
        self.out = np.zeros((n, 3))  # drawers: the opening direction (world)
        self.handle = np.zeros(n, np.int64)  # drawers: the handle geom
        self.back = np.zeros((n, 3))
        self.anchor = np.zeros((n, 3))  # knobs: a point on the axis, the axis, the contact at q0
        self.axis = np.zeros((n, 3))
        self.contact = np.zeros((n, 3))
        self.lever = np.zeros((n, 3))
        self.height = np.zeros(n)
        self.q0 = np.zeros(n)
        self.gap = np.zeros(n)  # drawers: the finger opening (m) for the pinch
        self.tries = np.zeros(n, np.int64)

    def _read(self, engine, ids):
        f = engine.field
        eef = f("site_xpos")[ids][:, self.eef_site].copy()
        ori = f("site_xmat")[ids][:, self.eef_site].reshape(-1, 3, 3).copy()
        q = engine.qpos[ids][:, self.qadr].copy()
        return eef, ori, q

    def _world_axis(self, engine, ids):
        xmat = engine.field("xmat")[ids][:, self.body].reshape(-1, 3, 3)
        axis = np.einsum("nij,j->ni", xmat, self.model.jnt_axis[self.joint])
        anchor = engine.field("xpos")[ids][:, self.body] + np.einsum("nij,j->ni", xmat, self.model.jnt_pos[self.joint])
        return axis / np.linalg.norm(axis, axis=1, keepdims=True), anchor

    def _boxes(self, engine, ids):
        return geom_boxes(self.model, self.geoms, engine.field("geom_xpos")[ids], engine.field("geom_xmat")[ids])

    def sweep(self, engine, ids, front: bool = True) -> np.ndarray:
        """[n, 2, 3] drawers: the box the drawer sweeps from here to the goal; with `front`,
        stretched out in front of it by the gripper's stand-off and down to the gripper's reach
        below the handle."""
        ids = np.asarray(ids, dtype=np.int64)
        axis, _ = self._world_axis(engine, ids)
        q = engine.qpos[ids][:, self.qadr]
        boxes = self._boxes(engine, ids)
        now = np.stack([boxes[:, :, 0].min(axis=1), boxes[:, :, 1].max(axis=1)], axis=1)
        travel = axis * (self.goal - q)[:, None]
        box = np.stack([np.minimum(now[:, 0], now[:, 0] + travel), np.maximum(now[:, 1], now[:, 1] + travel)], axis=1)
        if not front:
            return box
        out = -self.sign * axis if self.predicate == "close" else self.sign * axis
        reach = np.einsum("ngi,ni->ng", np.where(out[:, None, :] > 0, boxes[:, :, 1], boxes[:, :, 0]), out)
        handle = boxes[np.arange(ids.size), np.argmax(reach, axis=1)]
        front = box + (STANDOFF + 0.02) * out[:, None, :]
        box = np.stack([np.minimum(box[:, 0], front[:, 0]), np.maximum(box[:, 1], front[:, 1])], axis=1)
        box[:, 0, 2] = np.minimum(box[:, 0, 2], handle.mean(axis=1)[:, 2] - 0.08)
        return box

    def satisfied(self, engine, ids) -> np.ndarray:
        """[n] bool: LIBERO's predicate already holds (the joint is past its threshold)."""
        q = engine.qpos[np.asarray(ids, dtype=np.int64)][:, self.qadr]
        return self.sign * (q - self.threshold) > 0

    def reached(self, q: np.ndarray) -> np.ndarray:
        return self.sign * (q - self.goal) >= 0

    def start(self, engine, ids, rows) -> None:
        ids, rows = np.asarray(ids, dtype=np.int64), np.asarray(rows, dtype=np.int64)
        eef, ori, q = self._read(engine, ids)
        axis, anchor = self._world_axis(engine, ids)
        boxes = self._boxes(engine, ids)  # [n, g, 2, 3]
        self.home_ori[rows] = ori
        self.home_pos[rows] = eef
        self.count[rows] = 0
        self.q0[rows] = q
        if self.slide:
            move = self.sign * axis  # the way the drawer has to go
            out = move if self.predicate == "open" else -move  # the drawer's opening direction
            self.out[rows] = out
            reach = np.einsum("ngi,ni->ng", np.where(out[:, None, :] > 0, boxes[:, :, 1], boxes[:, :, 0]), out)
            self.handle[rows] = np.argmax(reach, axis=1)
            height = boxes[np.arange(ids.size), self.handle[rows], 1, 2] - boxes[np.arange(ids.size), self.handle[rows], 0, 2]
            self.gap[rows] = 0.5 * height + PINCH_ROOM
            self.tries[rows] = 0
            # fingers pointing into the cabinet; closing vertically to pinch (open), across to push (close)
            up = np.array([0.0, 0.0, 1.0])
            side = np.cross(up, out)
            across = up if self.predicate == "open" else side / np.linalg.norm(side, axis=1, keepdims=True)
            across = np.broadcast_to(across, out.shape)
            for r, (o, a, cur) in enumerate(zip(out, across, ori)):
                best = None
                for s in (1.0, -1.0):
                    want = np.stack([s * a, np.cross(-o, s * a), -o], axis=1)  # columns: closing, -, approach
                    err = orientation_error(cur[None], want[None])[0]
                    if best is None or err < best[0]:
                        best = (err, want)
                self.ori[rows[r]] = best[1]
            self.phase[rows] = TO_FRONT
        else:
            if (np.abs(axis[:, 2]) < 0.9).any():
                raise UnsupportedGoal("a knob whose axis is not vertical")
            axis = axis * np.sign(axis[:, 2:3])
            self.axis[rows] = axis
            self.anchor[rows] = anchor
            top = boxes[:, :, 1, 2]
            high = top >= top.max(axis=1, keepdims=True) - 0.02  # the lever: the highest geoms
            for r in range(ids.size):
                hb = boxes[r, high[r]]  # [h, 2, 3]
                corners = np.stack([hb[:, [i, j, 0], [0, 1, 2]] for i in (0, 1) for j in (0, 1)], 1).reshape(-1, 3)
                rel = corners[:, :2] - anchor[r, :2]
                far = rel[np.argmax(np.linalg.norm(rel, axis=1))]
                reach = np.linalg.norm(far)
                u = np.array([*far / max(reach, 1e-9), 0.0])
                tangent = self.sign * np.cross(axis[r], u)
                tangent[2] = 0.0
                tangent /= max(np.linalg.norm(tangent), 1e-9)
                half = np.abs((corners[:, :2] - anchor[r, :2]) @ tangent[:2]).max()
                self.lever[rows[r]] = KNOB_RADIUS * reach * u  # the push point on the lever, from the axis
                self.height[rows[r]] = hb[:, 1, 2].max() - 0.012 - anchor[r, 2]
                point = anchor[r] + self.lever[rows[r]] - (half + FINGER_HALF + 0.008) * tangent
                point[2] = anchor[r, 2] + self.height[rows[r]]
                self.contact[rows[r]] = point
            self.phase[rows] = ABOVE
            self.ori[rows] = ori

    # ------------------------------------------------------------------ control
    def act(self, engine, ids, rows):
        """Actions [n, 7] of env ids `ids` (rows `rows`) and whether each has finished."""
        ids, rows = np.asarray(ids, dtype=np.int64), np.asarray(rows, dtype=np.int64)
        eef, ori, q = self._read(engine, ids)
        if self.slide:
            return self._act_drawer(engine, ids, rows, eef, ori, q)
        return self._act_knob(engine, ids, rows, eef, ori, q)

    def _act_drawer(self, engine, ids, rows, eef, ori, q):
        boxes = self._boxes(engine, ids)
        n = ids.size
        handle = boxes[np.arange(n), self.handle[rows]].mean(axis=1)  # [n, 3] handle centre
        out = self.out[rows]
        phase, count = self.phase[rows], self.count[rows]
        target = eef.copy()
        want = self.ori[rows].copy()
        grip = np.full(n, OPEN if self.predicate == "open" else CLOSED)
        done = np.zeros(n, bool)
        ang = orientation_error(ori, want)
        # towards the pinch opening: robosuite moves the finger command 5 mm a control step on a
        # nonzero gripper input and holds it on zero
        opening = engine.field("ctrl")[ids][:, self.finger_actuator]
        towards = np.where(opening > self.gap[rows] + 0.0026, CLOSED, np.where(opening < self.gap[rows] - 0.0026, OPEN, 0.0))
        for r in range(n):
            p = phase[r]
            if p == TO_FRONT:
                target[r] = handle[r] + STANDOFF * out[r]
                if (eef[r] - handle[r]) @ out[r] < STANDOFF - 0.03:  # over or behind the drawer: out first, then down
                    target[r, 2] = max(target[r, 2], eef[r, 2])
                if self.predicate == "open":
                    grip[r] = towards[r]
                if np.linalg.norm(eef[r] - target[r]) < 0.015 and ang[r] < 0.08:
                    p, count[r] = ONTO, 0
            if p == ONTO:
                target[r] = handle[r]
                if self.predicate == "open":
                    grip[r] = towards[r]
                count[r] += 1
                if self.predicate == "close" or np.linalg.norm(eef[r] - target[r]) < 0.006 or count[r] > 40:
                    p, count[r] = (PINCH if self.predicate == "open" else MOVE), 0
            if p == PINCH:
                target[r] = handle[r]
                grip[r] = CLOSED
                count[r] += 1
                if count[r] >= PINCH_STEPS:
                    p, count[r] = MOVE, 0
            if p == MOVE:
                move = out[r] if self.predicate == "open" else -out[r]
                target[r] = handle[r] + PULL_LEAD * move
                grip[r] = CLOSED
                count[r] += 1
                slipped = np.linalg.norm(eef[r] - handle[r]) > SLIP and self.tries[rows[r]] + 1 < MAX_TRIES
                if self.reached(q[r:r + 1])[0] or count[r] > 120 or slipped:
                    p, count[r] = RELEASE, 0
                    if slipped:  # let go, back off and take the handle again
                        self.tries[rows[r]] += 1
                        p = RETRY
            if p == RETRY:
                target[r] = eef[r] + 0.05 * out[r]
                grip[r] = OPEN
                count[r] += 1
                if count[r] >= RELEASE_STEPS:
                    p, count[r] = TO_FRONT, 0
            if p == RELEASE:
                target[r] = eef[r]
                grip[r] = OPEN
                count[r] += 1
                if count[r] >= RELEASE_STEPS or self.predicate == "close":
                    p, count[r] = BACK, 0
                    self.back[rows[r]] = eef[r] + 0.06 * out[r]
            if p == BACK:
                target[r] = self.back[rows[r]]
                grip[r] = OPEN
                count[r] += 1
                if np.linalg.norm(eef[r] - target[r]) < 0.02 or count[r] > 40:
                    p, count[r] = RESTORE, 0
            if p == RESTORE:  # back to the start pose: the arm's posture comes back with it
                target[r] = self.home_pos[rows[r]]
                want[r] = self.home_ori[rows[r]]
                grip[r] = OPEN
                count[r] += 1
                if (orientation_error(ori[r:r + 1], want[r:r + 1])[0] < 0.08
                        and np.linalg.norm(eef[r] - target[r]) < 0.08) or count[r] > 80:
                    p = DONE
            if p == DONE:
                target[r] = self.home_pos[rows[r]]
                want[r] = self.home_ori[rows[r]]
                grip[r] = OPEN
                done[r] = True
            phase[r] = p
        self.phase[rows], self.count[rows] = phase, count
        action = np.zeros((n, 7))
        action[:, :3] = position_input(target, eef)
        action[:, 3:6] = rotation_input(ori, want)
        action[:, 6] = grip
        return action, done

    def _act_knob(self, engine, ids, rows, eef, ori, q):
        n = ids.size
        phase, count = self.phase[rows], self.count[rows]
        contact = self.contact[rows]
        target = eef.copy()
        done = np.zeros(n, bool)
        # the push point on the lever as the knob has turned, and past it in the turning direction
        lever = np.einsum("nij,nj->ni", _rot(self.axis[rows], q - self.q0[rows]), self.lever[rows])
        ahead = self.sign * np.cross(self.axis[rows], lever)
        ahead /= np.maximum(np.linalg.norm(ahead, axis=1, keepdims=True), 1e-9)
        lead = self.anchor[rows] + lever + PUSH_DEPTH * ahead
        lead[:, 2] = self.anchor[rows, 2] + self.height[rows]
        for r in range(n):
            p = phase[r]
            if p == ABOVE:
                target[r] = [contact[r, 0], contact[r, 1], contact[r, 2] + 0.06]
                if np.linalg.norm(eef[r, :2] - target[r, :2]) < 0.01 and abs(eef[r, 2] - target[r, 2]) < 0.02:
                    p, count[r] = DOWN, 0
            if p == DOWN:
                target[r] = contact[r]
                count[r] += 1
                if np.linalg.norm(eef[r] - target[r]) < 0.008 or count[r] > 40:
                    p, count[r] = TURN, 0
            if p == TURN:
                target[r] = lead[r]
                count[r] += 1
                if self.reached(q[r:r + 1])[0] or count[r] > 120:
                    p, count[r] = RISE, 0
                    self.back[rows[r]] = eef[r] + np.array([0.0, 0.0, 0.08])
            if p == RISE:
                target[r] = self.back[rows[r]]
                done[r] = eef[r, 2] > target[r, 2] - 0.02
            phase[r] = p
        self.phase[rows], self.count[rows] = phase, count
        action = np.zeros((n, 7))
        action[:, :3] = position_input(target, eef)
        action[:, 6] = CLOSED
        return action, done
