"""vlarl-fast: a performance-first engine for RL of Vision-Language-Action policies.

The native rollout engine is imported lazily so that the pure-Python layers (kernels, policy,
GRPO) work even where the native core has not been built.
"""

__version__ = "0.1.0"

__all__ = ["Engine", "__version__"]


def __getattr__(name):
    if name == "Engine":
        from vlarl_fast.engine import Engine

        return Engine
    raise AttributeError(f"module 'vlarl_fast' has no attribute {name!r}")
