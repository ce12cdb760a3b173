"""Faces for other frameworks, so their users get the engine's speed by changing a few lines
(docs/integrations.md shows each swap beside the code it replaces). Nothing in vlarl_fast imports
this package.

`vlarl_fast.compat.verl`: veRL 0.9.1's core_algos / torch_functional functions (no veRL needed).
`vlarl_fast.compat.simplevla`: the loss and advantage functions of SimpleVLA-RL's vendored veRL,
    with its signatures and maths.
`vlarl_fast.compat.simplevla_env`: the env side of SimpleVLA-RL's LIBERO rollout (its env_worker
    protocol) on a persistent native pool, and the patch that swaps it in.
`vlarl_fast.compat.torchrl_env`: a batched TorchRL `EnvBase` over the native LIBERO pool.
"""
