"""grpo.lr_warmup_steps: the lr of each AdamW step of the GRPO update follows the linear warm-up
lr * (k+1)/N, then stays at lr; an optimizer saved mid-warm-up and loaded into a fresh one
continues the same schedule (the step count is AdamW's own state); 0 leaves the lr constant."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlarl_fast.rl import grpo
from vlarl_fast.rl.distributed import DistInfo
from vlarl_fast.rl.update import UpdateSettings, ppo_update

from _helpers import INSTRUCTIONS, sampled_batch, tiny_policy

LR = 1e-3


def _lrs_of_steps(model, opt, settings, updates, seed=0):
    """The lr each optimizer step ran with, read inside AdamW.step."""
    seen = []
    hook = opt.register_step_pre_hook(lambda o, *_: seen.append(o.param_groups[0]["lr"]))
    try:
        batch = sampled_batch(model, seed=seed)
        adv = grpo.advantages(batch)
        for u in range(updates):
            ppo_update(model, opt, batch, adv, INSTRUCTIONS, settings, DistInfo(), torch.Generator().manual_seed(u))
    finally:
        hook.remove()
    return seen


@pytest.mark.parametrize("warmup", [0, 1, 5])
def test_lr_follows_linear_warmup(warmup):
    model = tiny_policy(0)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)
    s = UpdateSettings(micro_batch_observations=8, mini_batches=2, ppo_epochs=1, lr=LR, lr_warmup_steps=warmup)
    seen = _lrs_of_steps(model, opt, s, updates=4)  # 8 optimizer steps
    expected = [LR * min(1.0, (k + 1) / warmup) if warmup else LR for k in range(8)]
    np.testing.assert_allclose(seen, expected, rtol=1e-12)


def test_restored_optimizer_continues_the_schedule(tmp_path):
    s = UpdateSettings(micro_batch_observations=8, mini_batches=2, ppo_epochs=1, lr=LR, lr_warmup_steps=6)
    model = tiny_policy(0)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)
    first = _lrs_of_steps(model, opt, s, updates=2)  # steps 0..3
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "ckpt.pt")
    fresh = tiny_policy(3)
    state = torch.load(tmp_path / "ckpt.pt", weights_only=False)
    fresh.load_state_dict(state["model"])
    opt2 = torch.optim.AdamW([p for p in fresh.parameters() if p.requires_grad], lr=LR)
    opt2.load_state_dict(state["opt"])
    rest = _lrs_of_steps(fresh, opt2, s, updates=2, seed=1)  # steps 4..7
    np.testing.assert_allclose(first + rest, [LR * min(1.0, (k + 1) / 6) for k in range(8)], rtol=1e-12)


def test_negative_warmup_is_a_config_error():
    from vlarl_fast.recipes import load_config

    with pytest.raises(ValueError, match="grpo.lr_warmup_steps"):
        load_config("builtin_cpu", ["grpo.lr_warmup_steps=-1"])
