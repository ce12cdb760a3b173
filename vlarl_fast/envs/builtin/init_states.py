"""Initial states of the built-in scene drawn from integer seeds (robosuite flat MuJoCo states).

Training draws seeds from [0, TRAIN_SEED_LIMIT); evaluation uses seeds from EVAL_SEED_BASE up, so
held-out states never occur in training. A seed fixes the cube placement; the robot always starts
at robosuite's Panda home pose.
"""

from __future__ import annotations

import numpy as np

TRAIN_SEED_LIMIT = 1_000_000
EVAL_SEED_BASE = 10_000_000


def states_from_seeds(env, seeds) -> np.ndarray:
    """[len(seeds), state_size] float64 flat states (robosuite `sim.get_state().flatten()`)."""
    out = []
    for seed in seeds:
        np.random.seed(int(seed) % (2**32))  # robosuite's placement sampler uses the global RNG
        env.reset()
        out.append(env.flat_state())
    return np.stack(out)


def eval_seeds(count: int, offset: int = 0) -> list[int]:
    return [EVAL_SEED_BASE + offset + i for i in range(count)]
