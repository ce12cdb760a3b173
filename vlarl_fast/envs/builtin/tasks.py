"""The built-in task family: a flat registry of language-conditioned tasks on `BuiltinTableEnv`.

Every task shares the scene; it names a target cube and a success predicate:
  reach  the gripper's grip site is inside a box around the target cube (in the cube's frame:
         |dx|, |dy| <= REACH_XY, 0 <= dz <= REACH_Z above the cube centre)   (default family)
  touch  the gripper (hand or fingers) is in contact with the target cube
"""

from __future__ import annotations

from dataclasses import dataclass

from vlarl_fast.envs.builtin.scene import CUBE_COLOURS

KINDS = ("reach", "touch")
REACH_XY = 0.04
REACH_Z = 0.08
EEF_BODY = "gripper0_eef"
GRIPPER_BODIES = ("robot0_right_hand", "gripper0_right_gripper", "gripper0_eef", "gripper0_leftfinger",
                  "gripper0_finger_joint1_tip", "gripper0_rightfinger", "gripper0_finger_joint2_tip")


@dataclass(frozen=True)
class Task:
    name: str
    kind: str
    colour: str
    instruction: str

    @property
    def target_body(self) -> str:
        return f"{self.colour}_cube_main"


def _build_registry() -> dict[str, Task]:
    tasks = {}
    for colour in CUBE_COLOURS:
        tasks[f"reach_{colour}"] = Task(f"reach_{colour}", "reach", colour, f"reach the {colour} cube")
        tasks[f"touch_{colour}"] = Task(f"touch_{colour}", "touch", colour, f"touch the {colour} cube")
    return tasks


TASKS: dict[str, Task] = _build_registry()
DEFAULT_TASKS: tuple[str, ...] = tuple(f"reach_{c}" for c in CUBE_COLOURS)


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise KeyError(f"task: unknown built-in task {name!r}; available: {sorted(TASKS)}")
    return TASKS[name]


def get_tasks(names) -> list[Task]:
    names = list(names)
    if not names:
        raise ValueError("tasks: expected at least one built-in task name, got an empty list")
    return [get_task(n) for n in names]
