"""The Python face of the native rollout core."""

from vlarl_fast.engine.engine import Engine, EnvStatus, MujocoError

__all__ = ["Engine", "EnvStatus", "MujocoError"]
