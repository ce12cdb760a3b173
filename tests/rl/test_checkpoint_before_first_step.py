"""The checkpoint a run writes after SFT (step 0, before the first optimizer step) changes nothing:
DCP's get_state_dict gives a fresh AdamW state by a zero-lr step (step count 1, zero moments),
which would shift AdamW's bias correction and the lr warm-up. After the save, and after a restore
from it, the first update equals that of an optimizer never checkpointed (tolerance 0)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlarl_fast.rl import checkpoint, grpo
from vlarl_fast.rl.distributed import DistInfo
from vlarl_fast.rl.update import UpdateSettings, ppo_update

from _helpers import INSTRUCTIONS, sampled_batch, tiny_policy

# warm-up on: its lr follows AdamW's own step count, which a leftover state would shift
SETTINGS = UpdateSettings(micro_batch_observations=8, mini_batches=2, ppo_epochs=1, lr=1e-3, lr_warmup_steps=4)
TIMING = ("time/", "perf/")


def _adamw(model):
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.01)


def _first_update(model, opt):
    batch = sampled_batch(tiny_policy(0), seed=3)
    metrics = ppo_update(model, opt, batch, grpo.advantages(batch), INSTRUCTIONS, SETTINGS, DistInfo(),
                         torch.Generator().manual_seed(3))
    return {k: v for k, v in metrics.items() if not k.startswith(TIMING)}, model.state_dict()


def _assert_same(a, b):
    (metrics_a, weights_a), (metrics_b, weights_b) = a, b
    assert metrics_a == metrics_b
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name


def _with_grads(model, leftover: bool):
    """SFT leaves .grad set on every parameter (DCP then skips its zero-lr initialisation)."""
    if leftover:
        gen = torch.Generator().manual_seed(7)
        for p in model.parameters():
            if p.requires_grad:
                p.grad = torch.randn(p.shape, generator=gen)
    return model


@pytest.mark.parametrize("leftover_grads", [False, True])
def test_step_zero_checkpoint_leaves_the_first_update_unchanged(tmp_path, leftover_grads):
    torch.set_num_threads(1)
    model = _with_grads(tiny_policy(0), leftover_grads)
    reference = _first_update(model, _adamw(model))

    saved_model = _with_grads(tiny_policy(0), leftover_grads)
    saved_opt = _adamw(saved_model)
    path = checkpoint.save_checkpoint(tmp_path, 0, saved_model, saved_opt, DistInfo(),
                                      policy_template=saved_model, extra={"history": []})
    assert not saved_opt.state  # no zero-lr initialisation: the weights alone were saved
    _assert_same(_first_update(saved_model, saved_opt), reference)

    resumed_model = tiny_policy(5)  # other weights: the restore must bring step 0's
    resumed_opt = _adamw(resumed_model)
    assert checkpoint.restore(path, resumed_model, resumed_opt, DistInfo())["step"] == 0
    assert not resumed_opt.state
    _assert_same(_first_update(resumed_model, resumed_opt), reference)


def test_a_checkpoint_after_a_step_keeps_the_optimizer_state(tmp_path):
    model = tiny_policy(0)
    opt = _adamw(model)
    _first_update(model, opt)
    path = checkpoint.save_checkpoint(tmp_path, 1, model, opt, DistInfo(), policy_template=model,
                                      extra={"history": []})
    other = tiny_policy(5)
    other_opt = _adamw(other)
    checkpoint.restore(path, other, other_opt, DistInfo())
    steps = {int(s["step"]) for s in other_opt.state.values()}
    assert steps == {int(s["step"]) for s in opt.state.values()} and min(steps) >= 1
    for p, q in zip(opt.param_groups[0]["params"], other_opt.param_groups[0]["params"]):
        assert np.array_equal(opt.state[p]["exp_avg"].numpy(), other_opt.state[q]["exp_avg"].numpy())
