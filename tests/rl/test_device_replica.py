"""The rollout replica is device-agnostic: built on the meta device in the compute dtype, filled by
`sync_rollout_policy`, it samples with a generator on its own device (frames go host -> pinned ->
device on CUDA) and its log-probs match the fp32 training model's (exactly in fp32; to bf16
precision in bf16). CUDA cases skip without a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlarl_fast.policy.checkpoint import empty_like
from vlarl_fast.rl.distributed import DistInfo, sync_rollout_policy

from _helpers import INSTRUCTIONS, tiny_policy

CASES = [("cpu", torch.float32, 0.0), ("cpu", torch.bfloat16, 0.1),
         pytest.param("cuda", torch.bfloat16, 0.1, marks=pytest.mark.skipif(
             not torch.cuda.is_available(), reason="needs a CUDA GPU"))]


@pytest.mark.parametrize("device,dtype,tolerance", CASES)
def test_replica_samples_on_its_device_with_the_training_weights(device, dtype, tolerance):
    torch.set_num_threads(1)
    train = tiny_policy(0)
    replica = empty_like(train, dtype=dtype, device=device)
    sync_rollout_policy(train, replica, DistInfo())
    for name, value in train.state_dict().items():
        assert torch.equal(replica.state_dict()[name].cpu(), value.to(dtype)), name
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, size=(6, 1, 16, 16, 3), dtype=np.uint8)
    prompts = [INSTRUCTIONS[i % 3] for i in range(6)]
    gen = torch.Generator(device=device).manual_seed(0)
    sample = replica.sample_actions(frames, prompts, generator=gen)
    assert sample.tokens.device.type == device and sample.logp.dtype == torch.float32
    again = replica.sample_actions(frames, prompts, generator=torch.Generator(device=device).manual_seed(0))
    assert torch.equal(again.tokens, sample.tokens)  # the device generator makes sampling reproducible
    with torch.no_grad():
        reference = train.action_logprob(frames, prompts, sample.tokens.cpu())
    worst = (sample.logp.cpu() - reference).abs().max().item()
    assert worst <= tolerance, (device, dtype, worst)
