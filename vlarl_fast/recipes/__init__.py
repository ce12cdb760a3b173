"""Typed training configurations and their YAML files (`builtin_cpu.yaml`, ...)."""

from vlarl_fast.recipes.config import (EnvConfig, EvalConfig, GRPOConfig, PolicyConfig, RunConfig,
                                       SFTConfig, TrainConfig, load_config, recipe_path)

__all__ = ["EnvConfig", "EvalConfig", "GRPOConfig", "PolicyConfig", "RunConfig", "SFTConfig",
           "TrainConfig", "load_config", "recipe_path"]
