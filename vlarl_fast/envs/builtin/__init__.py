"""The built-in task family: a robosuite Panda at a table with coloured cubes, language
instructions, a scripted expert and seeded held-out initial states. No downloads."""

from vlarl_fast.envs.builtin.tasks import DEFAULT_TASKS, TASKS, Task, get_task, get_tasks

__all__ = ["DEFAULT_TASKS", "TASKS", "Task", "get_task", "get_tasks"]
