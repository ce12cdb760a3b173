"""GRPO training of VLA policies on the engine: rollout, compact trajectories, the update, SFT,
distributed SPMD, checkpoints and logs (see docs/training.md)."""
