"""CUDA checks of the tiny preset: bf16 rollout/training agreement through the Triton log-prob kernel."""

import pytest
import torch

from .conftest import INSTRUCTIONS, make_frames

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
def test_cuda_rollout_and_training_logprob_agree(make_model):
    model = make_model().to("cuda")
    frames = make_frames(4, height=24, width=24)
    instructions = (INSTRUCTIONS * 2)[:4]
    out = model.sample_actions(frames, instructions, generator=torch.Generator("cuda").manual_seed(0))
    assert out.tokens.device.type == "cuda" and out.actions.shape == (4, 8, 7)
    logp = model.action_logprob(out.obs, None, out.tokens)
    torch.testing.assert_close(logp, out.logp, rtol=0, atol=1e-5)
    model.to(torch.bfloat16)
    out16 = model.sample_actions(frames, instructions, generator=torch.Generator("cuda").manual_seed(0))
    logp16, ent16 = model.action_logprob(out16.obs, None, out16.tokens, return_entropy=True)
    torch.testing.assert_close(logp16, out16.logp, rtol=0, atol=1e-3)
    logp16.sum().backward()
    assert model.language_model.lm_head.weight.grad is not None
