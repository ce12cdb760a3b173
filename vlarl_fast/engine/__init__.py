"""The Python face of the native rollout core."""

from vlarl_fast.engine.engine import Engine, EngineClosedError, EnvStatus, MujocoError

__all__ = ["Engine", "EngineClosedError", "EnvStatus", "MujocoError"]
