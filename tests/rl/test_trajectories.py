"""Compact storage: dtypes, token mask after the last executed step, footprint, GRPO filter."""

from __future__ import annotations

import numpy as np
import torch

from vlarl_fast.rl import grpo
from vlarl_fast.rl.sft import encode_actions
from vlarl_fast.rl.policy_setup import BUILTIN_STATS, BUILTIN_UNNORM_KEY
from vlarl_fast.rl.trajectories import TrajectoryBatch
from vlarl_fast.policy import ActionDetokenizer


def _batch(success, group_ids, executed):
    b, t = executed.shape
    return TrajectoryBatch(images=np.zeros((b, t, 1, 8, 8, 3), np.uint8), tokens=np.zeros((b, t, 56), np.uint8),
                           logp=np.zeros((b, t, 56), np.float32), executed=executed.astype(np.uint8),
                           task_ids=np.zeros(b, np.int64), group_ids=np.asarray(group_ids),
                           success=np.asarray(success, bool))


def test_token_mask_stops_after_last_executed_step():
    executed = np.array([[8, 3], [8, 0]])
    mask = _batch([1, 0], [0, 0], executed).token_mask()
    assert mask.shape == (2, 2, 56)
    assert mask[0, 0].all() and mask[0, 1, :21].all() and not mask[0, 1, 21:].any()
    assert mask[1, 0].all() and not mask[1, 1].any()


def test_footprint_is_compact():
    b = _batch([1, 0], [0, 0], np.array([[8, 8], [8, 8]]))
    fp = b.footprint()
    assert fp["images"] == 2 * 2 * 8 * 8 * 3 and fp["tokens"] == 2 * 2 * 56
    assert b.nbytes() == sum(fp.values())


def test_mixed_group_filter_and_advantages():
    b = _batch([1, 0, 1, 1, 0, 0], [0, 0, 1, 1, 2, 2], np.full((6, 1), 8))
    assert grpo.mixed_groups(b).tolist() == [0]
    adv = grpo.advantages(b)
    std = torch.tensor([1.0, 0.0]).std()
    assert torch.allclose(adv[:2], torch.tensor([0.5, -0.5]) / (std + 1e-6))
    assert torch.all(adv[2:] == 0)


def test_encode_actions_inverts_the_detokenizer():
    stats = BUILTIN_STATS[BUILTIN_UNNORM_KEY]["action"]
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(5, 8, 7))
    actions[..., 3:6] = 0
    bins = encode_actions(actions, stats)
    decoded = ActionDetokenizer(256, 8, 7, "none").decode(torch.from_numpy(bins), stats).numpy()
    assert np.abs(decoded - actions).max() <= 2 / 255 + 1e-6
