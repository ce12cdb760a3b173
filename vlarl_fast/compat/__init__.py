"""Drop-in layers with other frameworks' call signatures, backed by vlarl_fast.kernels.

`vlarl_fast.compat.verl`: veRL's core_algos / torch_functional functions (no veRL needed).
"""
