"""action_logprob inside an FSDP2 (fully_shard) module: single process, gloo, CPU. The LM-head
weight is unsharded during the module's forward, and the gradient reduced into the sharded
parameter equals the unsharded model's."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist

from vlarl_fast.kernels import action_logprob

fsdp = pytest.importorskip("torch.distributed.fsdp")


class _TinyPolicy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(16, 16)
        self.lm_head = torch.nn.Linear(16, 64, bias=False)

    def forward(self, x, labels):
        # the weight must be read inside an FSDP-wrapped forward, where it is unsharded
        return action_logprob(self.body(x), self.lm_head.weight, labels, temperature=1.6,
                              bin_start=32, bin_end=56, return_entropy=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")
def test_fully_shard_gradients_match_unsharded():
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0,
                            world_size=1)
    try:
        torch.manual_seed(0)
        sharded, plain = _TinyPolicy(), _TinyPolicy()
        plain.load_state_dict(sharded.state_dict())
        fsdp.fully_shard(sharded)
        x, labels = torch.randn(10, 16), torch.randint(0, 24, (10,))
        logp, ent = sharded(x, labels)
        (logp.sum() + 0.1 * ent.sum()).backward()
        logp_ref, ent_ref = plain(x, labels)
        (logp_ref.sum() + 0.1 * ent_ref.sum()).backward()
        assert torch.allclose(logp, logp_ref, atol=1e-6)
        grad = sharded.lm_head.weight.grad
        grad = grad.full_tensor() if hasattr(grad, "full_tensor") else grad
        assert torch.allclose(grad, plain.lm_head.weight.grad, atol=1e-6)
        assert (grad[:32] == 0).all() and (grad[56:] == 0).all()
        body_grad = sharded.body.weight.grad
        body_grad = body_grad.full_tensor() if hasattr(body_grad, "full_tensor") else body_grad
        assert torch.allclose(body_grad, plain.body.weight.grad, atol=1e-6)
    finally:
        dist.destroy_process_group()
