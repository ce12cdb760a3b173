"""The ops trace under torch.compile (full graph, forward and backward through AOTAutograd) and
agree with eager; the Triton path is checked under compile on a CUDA GPU."""

from __future__ import annotations

import pytest
import torch

from tests.kernels.conftest import requires_cuda
from vlarl_fast.kernels import action_logprob, grpo_loss


def _step(hidden, weight, labels, old, adv, mask, backend):
    logp, entropy = action_logprob(hidden, weight, labels, temperature=1.6, bin_start=8,
                                   bin_end=24, return_entropy=True, backend=backend)
    loss, stats = grpo_loss(logp, old, adv, mask, clip_low=0.2, clip_high=0.28, clip_c=3.0,
                            agg="seq-mean-token-mean", backend=backend)
    return loss - 1e-3 * entropy.mean(), stats["clipfrac"]


def _inputs(device):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 7, 12, generator=g).to(device).requires_grad_()
    weight = torch.randn(32, 12, generator=g).to(device).requires_grad_()
    labels = torch.randint(0, 16, (3, 7), generator=g).to(device)
    old = (torch.randn(3, 7, generator=g) * 0.2 - 2.8).to(device)
    adv = torch.randn(3, generator=g).to(device)
    mask = (torch.rand(3, 7, generator=g) < 0.8).to(device)
    return hidden, weight, labels, old, adv, mask


def _eager_vs_compiled(device, backend, compile_backend):
    args = _inputs(device)
    loss, clipfrac = _step(*args, backend=backend)
    loss.backward()
    grads = (args[0].grad.clone(), args[1].grad.clone())
    args[0].grad = args[1].grad = None
    compiled = torch.compile(_step, backend=compile_backend, fullgraph=backend == "torch")
    loss_c, clipfrac_c = compiled(*args, backend=backend)
    loss_c.backward()
    assert torch.allclose(loss_c, loss, rtol=1e-5, atol=1e-6)
    assert torch.allclose(clipfrac_c, clipfrac)
    assert torch.allclose(args[0].grad, grads[0], rtol=1e-4, atol=1e-6)
    assert torch.allclose(args[1].grad, grads[1], rtol=1e-4, atol=1e-6)


def test_torch_path_full_graph_under_compile():
    torch._dynamo.reset()
    _eager_vs_compiled("cpu", "torch", "aot_eager")


@requires_cuda
def test_triton_path_under_compile_on_gpu():
    torch._dynamo.reset()
    _eager_vs_compiled("cuda", "triton", "inductor")
