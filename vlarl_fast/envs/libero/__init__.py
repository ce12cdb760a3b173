"""LIBERO on the native engine: suites and tasks from the user's LIBERO install, LIBERO's
success check on engine state, evaluation, and a gymnasium VectorEnv face. docs/libero.md.

Importing this package does not import `libero` (whose import may prompt on stdin); the
submodules do, through `config.import_libero()`, which writes LIBERO's config file first.
"""

from vlarl_fast.envs.libero.config import LiberoNotFoundError, import_libero
from vlarl_fast.envs.libero.registry import (MAX_EPISODE_STEPS, SETTLE_STEPS, SUITES, LiberoTask,
                                             get_task, suite_tasks)

__all__ = ["LiberoNotFoundError", "import_libero", "MAX_EPISODE_STEPS", "SETTLE_STEPS", "SUITES",
           "LiberoTask", "get_task", "suite_tasks"]
