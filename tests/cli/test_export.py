"""`vlarl-fast export`: a training checkpoint (sharded state + policy metadata), named by its
directory, by checkpoints/latest or by the run directory, becomes the official OpenVLA-OFT layout
that `load_pretrained` reads back bit for bit (bf16 by default, as released checkpoints)."""

from __future__ import annotations

import torch

from vlarl_fast.cli import main
from vlarl_fast.policy import load_pretrained
from vlarl_fast.rl import checkpoint
from vlarl_fast.rl.distributed import DistInfo
from vlarl_fast.rl.policy_setup import build_policy


def test_export_reads_back_exactly(tmp_path, capsys):
    torch.manual_seed(0)
    policy = build_policy(16, 3)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    checkpoint.save_checkpoint(tmp_path / "run", 4, policy, opt, DistInfo(), policy_template=policy,
                               extra={"history": []})
    step_dir = tmp_path / "run" / "checkpoints" / "step_000004"
    for i, (source, dtype) in enumerate([(step_dir, "float32"), (tmp_path / "run", "bfloat16"),
                                         (tmp_path / "run" / "checkpoints" / "latest", "bfloat16")]):
        out = tmp_path / f"release{i}"
        assert main(["export", str(source), str(out), "--dtype", dtype]) == 0
        assert "exported" in capsys.readouterr().out
        loaded = load_pretrained(out, dtype=getattr(torch, dtype))
        assert loaded.norm_stats == policy.norm_stats
        for name, value in policy.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], value.to(getattr(torch, dtype))), name
    # a training checkpoint is also accepted wherever a policy is (eval --checkpoint, policy.init)
    again = build_policy(16, 0, str(step_dir))
    assert all(torch.equal(again.state_dict()[k], v) for k, v in policy.state_dict().items())
