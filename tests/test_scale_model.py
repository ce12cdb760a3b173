"""benchmarks/scale_model.py's FLOP count of OpenVLA-OFT (docs/scale.md) equals what torch's
FlopCounterMode counts on the real 7B modules (built on the meta device: shapes only), part by
part: the fused vision backbone, the projector, the Llama decoder over the observation's tokens."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from vlarl_fast.policy import OpenVLAOFT, OpenVLAOFTConfig

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "scale_model.py"
_spec = importlib.util.spec_from_file_location("scale_model", _PATH)
scale_model = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("scale_model", scale_model)  # its dataclasses look their module up
_spec.loader.exec_module(scale_model)


def _count(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def test_flop_count_matches_torch_flop_counter_on_the_7b_modules():
    cfg = OpenVLAOFTConfig.openvla_7b()
    f = scale_model.policy_flops(cfg, prompt_tokens=34)
    assert f.seq_len == 1 + 256 + 34 + 56 + 1
    with torch.device("meta"):
        model = OpenVLAOFT(cfg).to(torch.bfloat16)
        pixels = torch.zeros(1, 1, 6, 224, 224, dtype=torch.bfloat16)
        vision = _count(lambda: model.vision_backbone(pixels))
        feats = torch.zeros(1, 256, cfg.vision_dim, dtype=torch.bfloat16)
        projector = _count(lambda: model.projector(feats))
        embeds = torch.zeros(1, f.seq_len, cfg.text.hidden_size, dtype=torch.bfloat16)
        llm = _count(lambda: model.language_model.model(inputs_embeds=embeds, attention_mask=None,
                                                         position_ids=torch.arange(f.seq_len)[None],
                                                         use_cache=False))
    head = 2 * cfg.num_action_tokens * cfg.text.hidden_size * cfg.n_action_bins
    assert vision == f.vision
    assert projector == f.projector
    assert llm == f.llm_linear - head + f.llm_attention
    assert 4.9e12 < f.forward < 5.1e12  # the figure docs/scale.md quotes (4.98 TFLOP)


def test_prediction_states_its_verdict():
    out = scale_model.predict(scale_model.build_parser().parse_args(["--env-ms", "30.5", "--checkpointing"]))
    assert "one RL step" in out and "goal <= 1/5: NOT met" in out  # full horizon on 8 x A800 (docs/scale.md)
    out = scale_model.predict(scale_model.build_parser().parse_args(
        ["--env-ms", "30.5", "--checkpointing", "--mean-chunks", "20", "--rounds", "1.5"]))
    assert "goal <= 1/5: met" in out
