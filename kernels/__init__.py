"""vlarl_fast.kernels: fused ops for RL of Vision-Language-Action policies.

Each op has a Triton implementation (CUDA tensors, or CPU under TRITON_INTERPRET=1) and a
PyTorch implementation (the float64-capable reference and the CPU path); `dispatch` picks one
(`VLARL_KERNEL_BACKEND=auto|triton|torch`). Importing this package never needs Triton.
"""

if __name__ == "kernels":
    # This folder is vlarl_fast.kernels' source. Run from the repository root (`python -m
    # pytest`, `python -c`), the root is on sys.path and this folder would shadow the Hugging
    # Face `kernels` package that transformers imports. Hand that import the real package.
    from ._shadow import load_shadowed_package

    load_shadowed_package(__name__, __path__)
else:
    from .action_logprob import action_logprob, action_logprob_from_logits
    from .advantage import grpo_outcome_advantage
    from .dispatch import BACKEND_ENV_VAR, select_backend, triton_available
    from .grpo_loss import grpo_loss
    from .reference import AGG_MODES

    __all__ = [
        "AGG_MODES",
        "BACKEND_ENV_VAR",
        "action_logprob",
        "action_logprob_from_logits",
        "grpo_loss",
        "grpo_outcome_advantage",
        "select_backend",
        "triton_available",
    ]
