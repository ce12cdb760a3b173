"""A scripted expert for LIBERO tasks, written against the task's BDDL goal.

LIBERO's parsed goal is a conjunction of predicates; the expert does them one after another,
each with a closed-loop controller on the live simulator state of every env:
- `On(obj, target)` / `In(obj, region)`: pick and place (expert_place.py);
- `Open` / `Close` of a drawer, `TurnOn` / `TurnOff` of a knob: move the part's joint past the
  threshold of LIBERO's own predicate on it (expert_joint.py);
- clearing a drawer's way before it opens (expert_clear.py).

The order: opening drawers first, then the placements in the goal's order, then closing drawers
and turning knobs (so "put the bowl in the bottom drawer and close it", whose BDDL lists Close
first, places before it closes). A placement into a drawer's region (a region whose site moves
with a slide joint that LIBERO can call open) is preceded by opening that drawer: LIBERO's
"open the top drawer and put the bowl inside" has the single goal In(bowl, top region). Before
each opening, every loose object of the scene gets a step that moves it to a free table spot if
it is in the drawer's way (expert_clear.py; skipped when it is not). A step whose predicate
already holds when its turn comes is skipped (a drawer that starts open).
Other predicates (Up, ...) and doors on hinges (a microwave's Close) raise `UnsupportedGoal`.

Actions are LIBERO's 7-D ones, as the policy outputs them: OSC_POSE position deltas in input
units (1 = 5 cm), rotation deltas (1 = 0.5 rad; zero for pick-and-place and knobs, so robosuite's
OSC keeps the downward gripper; drawers turn the gripper to point into the cabinet and back),
gripper -1 open / +1 closed. No constant is tuned to an init state.

    expert = LiberoExpert(scene)                    # scene: LiberoScene of the task
    expert.reset(engine, env_ids)                   # at the episode start (after settling)
    actions = expert.act(engine, env_ids)           # [n, 7] for the next control step
"""

from __future__ import annotations

import numpy as np

from vlarl_fast.envs.libero.expert_clear import ClearExpert
from vlarl_fast.envs.libero.expert_common import OPEN, UnsupportedGoal
from vlarl_fast.envs.libero.expert_joint import JointExpert
from vlarl_fast.envs.libero.expert_place import PlaceExpert

__all__ = ["LiberoExpert", "UnsupportedGoal", "plan_goal"]


def plan_goal(scene) -> list[tuple]:
    """The goal's predicates in the order the expert does them, with the drawer openings that
    placements into drawers need (see the module docstring)."""
    from vlarl_fast.envs.libero.native_goal import joint_goal

    opens, places, finals = [], [], []
    for pred in scene.goal():
        name = str(pred[0]).lower()
        if name in ("on", "in") and len(pred) == 3:
            if joint_goal(scene, "open", pred[2]) is not None:
                opens.append(("open", pred[2]))
            places.append((name, pred[1], pred[2]))
        elif name == "open" and len(pred) == 2:
            opens.append((name, pred[1]))
        elif name in ("close", "turnon", "turnoff") and len(pred) == 2:
            finals.append((name, pred[1]))
        else:
            raise UnsupportedGoal(f"{scene.task.name}: the expert has no controller for {pred} (goal {scene.goal()})")
    picked = {step[1] for step in places}
    loose = list(getattr(scene.robosuite_env, "objects_dict", {}).keys())
    seen, ordered = set(), []
    for step in opens + places + finals:
        if step in seen:
            continue
        seen.add(step)
        if step[0] == "open":  # first clear the drawer's way
            ordered += [("clear", obj, step[1], obj in picked) for obj in loose]
        ordered.append(step)
    return ordered


class LiberoExpert:
    """The scripted expert of one LIBERO task (see the module docstring)."""

    def __init__(self, scene):
        self.plan = plan_goal(scene)
        joints = {step: JointExpert(scene, *step) for step in self.plan
                  if step[0] in ("open", "close", "turnon", "turnoff")}
        self.experts = []
        for step in self.plan:
            if step[0] == "clear":  # out of the way of the drawer that this opening opens
                _, obj, region, picked_later = step
                self.experts.append(ClearExpert(scene, obj, joints[("open", region)], picked_later))
            else:
                self.experts.append(joints[step] if step in joints else PlaceExpert(scene, *step))
        self.ids = np.zeros(0, np.int64)
        self.step = np.zeros(0, np.int64)

    def reset(self, engine, env_ids) -> None:
        self.ids = np.asarray(env_ids, dtype=np.int64)
        self.step = np.zeros(self.ids.size, np.int64)
        for expert in self.experts:
            expert.setup(self.ids.size)
        self._begin(engine, np.arange(self.ids.size))

    def _begin(self, engine, rows: np.ndarray) -> None:
        """Starts the current step of env rows `rows`, skipping steps that already hold."""
        while rows.size:
            skipped = []
            for k in np.unique(self.step[rows]):
                sel = rows[self.step[rows] == k]
                expert = self.experts[k]
                expert.start(engine, self.ids[sel], sel)
                if k + 1 < len(self.experts) and hasattr(expert, "satisfied"):
                    held = sel[expert.satisfied(engine, self.ids[sel])]
                    self.step[held] += 1
                    skipped.append(held)
            rows = np.concatenate(skipped) if skipped else np.zeros(0, np.int64)

    def act(self, engine, env_ids) -> np.ndarray:
        ids = np.asarray(env_ids, dtype=np.int64)
        rows = np.searchsorted(self.ids, ids) if not np.array_equal(ids, self.ids) else np.arange(ids.size)
        action = np.zeros((ids.size, 7))
        action[:, 6] = OPEN
        pending = np.arange(ids.size)
        for _ in range(len(self.experts) + 1):  # a step that finishes hands over in the same control step
            if pending.size == 0:
                break
            moved = []
            for k in np.unique(self.step[rows[pending]]):
                sel = pending[self.step[rows[pending]] == k]
                action[sel], done = self.experts[k].act(engine, ids[sel], rows[sel])
                finished = sel[done] if k + 1 < len(self.experts) else sel[:0]
                if finished.size:
                    self.step[rows[finished]] += 1
                    self._begin(engine, rows[finished])
                    moved.append(finished)
            pending = np.concatenate(moved) if moved else np.zeros(0, np.int64)
        return action
