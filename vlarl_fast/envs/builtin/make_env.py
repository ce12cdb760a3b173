"""`make_chunk_env`: the built-in tasks' chunk env, native (default) or robosuite reference."""

from __future__ import annotations


def make_chunk_env(backend: str, num_envs: int, *, max_steps: int, image_size: int, num_threads: int = 2,
                   fast_render: bool = False):
    """`backend`: "engine" (native, the default of every recipe) or "reference" (robosuite Python).
    `fast_render` (engine only): no MSAA, shadows or reflections."""
    if backend == "reference":
        if fast_render:
            raise ValueError("config field env.fast_render: only the 'engine' backend supports it")
        from vlarl_fast.envs.builtin.chunk_env import ReferenceChunkEnv

        return ReferenceChunkEnv(num_envs, max_steps=max_steps, image_size=image_size)
    if backend == "engine":
        from vlarl_fast.envs.builtin.engine_env import EngineChunkEnv

        return EngineChunkEnv(num_envs, max_steps=max_steps, image_size=image_size, num_threads=num_threads,
                              fast_render=fast_render)
    raise ValueError(f"config field env.backend: expected 'engine' or 'reference', got {backend!r}")
