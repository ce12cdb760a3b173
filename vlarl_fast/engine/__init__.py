"""The Python face of the native rollout core."""

from vlarl_fast.engine.engine import Engine, EngineClosedError, EnvStatus, MujocoError
from vlarl_fast.engine.pool import EnginePool

__all__ = ["Engine", "EngineClosedError", "EnginePool", "EnvStatus", "MujocoError"]
