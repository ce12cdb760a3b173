"""The official HF layout: names, sharding, index, config.json; exact round trip; clear errors."""

import json
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from vlarl_fast.policy import CheckpointMismatchError, OpenVLAOFT, OpenVLAOFTConfig, load_pretrained, save_pretrained
from vlarl_fast.policy.checkpoint import CHECKSUM_FILE, config_from_hf_dict, config_to_hf_dict

from .conftest import INSTRUCTIONS, make_frames, make_proprio

# Every tensor name of an official OpenVLA(-OFT) checkpoint has one of these forms.
OFFICIAL_NAME = re.compile(
    r"^(vision_backbone\.(featurizer|fused_featurizer)\.("
    r"patch_embed\.proj\.(weight|bias)|cls_token|reg_token|pos_embed|norm\.(weight|bias)|"
    r"blocks\.\d+\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)|"
    r"blocks\.\d+\.ls[12]\.scale_factor|"
    r"attn_pool\.(latent|(q|kv|proj|norm|mlp\.fc1|mlp\.fc2)\.(weight|bias)))"
    r"|projector\.fc[123]\.(weight|bias)|proprio_projector\.fc[12]\.(weight|bias)"
    r"|language_model\.model\.embed_tokens\.weight|language_model\.model\.norm\.weight|language_model\.lm_head\.weight"
    r"|language_model\.model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj|input_layernorm|post_attention_layernorm)\.weight)$"
)


def outputs(model, frames, proprio=None):
    out = model.sample_actions(frames, INSTRUCTIONS[: len(frames)], proprio, generator=torch.Generator().manual_seed(0))
    return out.tokens, out.logp, out.actions


def test_7b_layout_uses_only_official_names_and_shapes():
    with torch.device("meta"):
        model = OpenVLAOFT(OpenVLAOFTConfig.openvla_7b())
    state = model.state_dict()
    assert [n for n in state if not OFFICIAL_NAME.match(n)] == []
    shapes = {n: tuple(t.shape) for n, t in state.items()}
    assert shapes["vision_backbone.featurizer.patch_embed.proj.weight"] == (1024, 3, 14, 14)
    assert shapes["vision_backbone.featurizer.pos_embed"] == (1, 256, 1024)
    assert shapes["vision_backbone.featurizer.reg_token"] == (1, 4, 1024)
    assert shapes["vision_backbone.featurizer.blocks.23.ls2.scale_factor"] == (1024,)
    assert shapes["vision_backbone.fused_featurizer.pos_embed"] == (1, 256, 1152)
    assert shapes["vision_backbone.fused_featurizer.blocks.26.mlp.fc1.weight"] == (4304, 1152)
    assert shapes["vision_backbone.fused_featurizer.attn_pool.kv.weight"] == (2304, 1152)
    assert "vision_backbone.fused_featurizer.cls_token" not in shapes
    assert shapes["projector.fc1.weight"] == (8704, 2176) and shapes["projector.fc3.weight"] == (4096, 4096)
    assert shapes["language_model.model.embed_tokens.weight"] == (32064, 4096)
    assert shapes["language_model.lm_head.weight"] == (32064, 4096)
    assert shapes["language_model.model.layers.31.mlp.gate_proj.weight"] == (11008, 4096)
    assert sum(np.prod(s) for s in shapes.values()) == 7_541_237_184


def test_official_config_json_resolves_to_the_7b_layout():
    # config.json as OpenVLA ships it: text_config overrides only vocab/pad (rest = LlamaConfig defaults)
    shipped = {
        "model_type": "openvla", "n_action_bins": 256, "pad_to_multiple_of": 64, "pad_token_id": 32000,
        "image_sizes": [224, 224], "use_fused_vision_backbone": True,
        "timm_model_ids": ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"],
        "text_config": {"model_type": "llama", "pad_token_id": 32000, "torch_dtype": "bfloat16", "vocab_size": 32064},
        "norm_stats": {},
    }
    assert config_from_hf_dict(shipped) == OpenVLAOFTConfig.openvla_7b()
    assert config_from_hf_dict(shipped, num_images=2, use_proprio=True) == OpenVLAOFTConfig.openvla_7b(2, True)
    cfg = OpenVLAOFTConfig.openvla_7b(num_images=2, use_proprio=True)
    written = config_to_hf_dict(cfg, {}, torch.bfloat16)
    assert "vision_towers" not in written["vlarl_fast"]  # official towers are named by their timm ids
    assert config_from_hf_dict(json.loads(json.dumps(written))) == cfg
    with pytest.raises(ValueError, match="timm_model_ids"):
        config_from_hf_dict({**shipped, "timm_model_ids": ["vit_base_patch16_224"]})
    # What an official checkpoint sees: SimpleVLA-RL's image pipeline on the engine's frames, which
    # are already in OpenVLA orientation (no second rotation).
    official = config_from_hf_dict(shipped)
    assert (official.image_pipeline, official.rotate_180, official.center_crop, official.crop_scale) == ("simplevla", False, True, 0.9)


def test_preprocessing_switches_round_trip_and_legacy_blocks_migrate():
    from vlarl_fast.rl.policy_setup import builtin_policy_config

    tiny = builtin_policy_config(16)  # the built-in policy: fast resize path, upright engine frames, no crop
    assert (tiny.image_pipeline, tiny.rotate_180, tiny.center_crop) == ("resize", False, False)
    for cfg in (tiny, OpenVLAOFTConfig.openvla_7b().replace(rotate_180=True), tiny.replace(image_pipeline="simplevla")):
        written = json.loads(json.dumps(config_to_hf_dict(cfg, {}, torch.float32)))
        assert written["vlarl_fast"]["image_pipeline"] == cfg.image_pipeline
        assert config_from_hf_dict(written) == cfg
    # Blocks written before `image_pipeline` existed: custom towers keep the fast path as written;
    # official towers move to SimpleVLA-RL's pipeline without the old default's second rotation.
    legacy_tiny = config_to_hf_dict(tiny.replace(rotate_180=True), {}, torch.float32)
    del legacy_tiny["vlarl_fast"]["image_pipeline"]
    got = config_from_hf_dict(legacy_tiny)
    assert (got.image_pipeline, got.rotate_180, got.center_crop) == ("resize", True, False)
    legacy_7b = config_to_hf_dict(OpenVLAOFTConfig.openvla_7b().replace(rotate_180=True, image_pipeline="resize"), {}, torch.float32)
    del legacy_7b["vlarl_fast"]["image_pipeline"]
    assert config_from_hf_dict(legacy_7b) == OpenVLAOFTConfig.openvla_7b()
    # No preprocessing keys at all (official config.json, or ours stripped of them): the defaults.
    stripped = config_to_hf_dict(tiny, {}, torch.float32)
    for key in ("image_pipeline", "rotate_180", "center_crop", "crop_scale", "resize_mode"):
        del stripped["vlarl_fast"][key]
    got = config_from_hf_dict(stripped)
    assert (got.image_pipeline, got.rotate_180, got.center_crop, got.crop_scale) == ("simplevla", False, True, 0.9)
    with pytest.raises(ValueError, match="image_pipeline"):
        OpenVLAOFTConfig.tiny().replace(image_pipeline="tf")


def test_sharded_round_trip_reproduces_outputs_exactly(make_model, tmp_path):
    model = make_model()
    frames = make_frames(3, height=20, width=20)
    save_pretrained(model, tmp_path, max_shard_size=200_000)
    shards = sorted(p.name for p in tmp_path.glob("model-*.safetensors"))
    assert len(shards) > 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(model.state_dict()) and set(index["weight_map"].values()) == set(shards)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert all(OFFICIAL_NAME.match(n) for n in index["weight_map"])
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "openvla" and config["n_action_bins"] == 256
    assert config["architectures"] == ["OpenVLAForActionPrediction"]
    for name in ["dataset_statistics.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"]:
        assert (tmp_path / name).is_file(), name

    loaded = load_pretrained(tmp_path, dtype=torch.float32)
    for a, b in zip(outputs(model, frames), outputs(loaded, frames)):
        assert torch.equal(a, b)
    assert loaded.norm_stats == model.norm_stats
    frozen = {n for n, p in loaded.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, p in model.named_parameters() if not p.requires_grad}


def test_single_file_layout_and_proprio_round_trip(make_model, tmp_path):
    model = make_model(num_images=2, use_proprio=True)
    frames, proprio = make_frames(2, num_images=2), make_proprio(2)
    save_pretrained(model, tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not (tmp_path / "model.safetensors.index.json").exists()
    assert "proprio_projector.fc1.weight" in load_file(tmp_path / "model.safetensors")
    loaded = load_pretrained(tmp_path, dtype=torch.float32)
    assert loaded.config == model.config
    for a, b in zip(outputs(model, frames, proprio), outputs(loaded, frames, proprio)):
        assert torch.equal(a, b)


def test_oft_separate_proprio_projector_file_is_read(make_model, tmp_path):
    model = make_model(use_proprio=True)
    save_pretrained(model, tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    projector = {k: state.pop(k) for k in list(state) if k.startswith("proprio_projector.")}
    save_file(state, tmp_path / "model.safetensors")
    (tmp_path / CHECKSUM_FILE).unlink()  # now laid out as OpenVLA-OFT's release, which has no checksums
    torch.save({"module." + k.removeprefix("proprio_projector."): v for k, v in projector.items()},
               tmp_path / "proprio_projector--50000_checkpoint.pt")
    loaded = load_pretrained(tmp_path, dtype=torch.float32)
    torch.testing.assert_close(loaded.proprio_projector.fc2.weight, model.proprio_projector.fc2.weight, rtol=0, atol=0)


def _rewrite_single_file(tmp_path, edit):
    """Edits the weights as a checkpoint made elsewhere would differ (no checksum file then)."""
    state = load_file(tmp_path / "model.safetensors")
    edit(state)
    save_file(state, tmp_path / "model.safetensors")
    (tmp_path / CHECKSUM_FILE).unlink(missing_ok=True)


def test_missing_unexpected_and_misshapen_tensors_are_listed(make_model, tmp_path):
    save_pretrained(make_model(), tmp_path)
    _rewrite_single_file(tmp_path, lambda s: s.pop("projector.fc2.bias"))
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(1\): projector\.fc2\.bias"):
        load_pretrained(tmp_path)
    save_pretrained(make_model(), tmp_path)
    _rewrite_single_file(tmp_path, lambda s: s.update({"vision_backbone.featurizer.head.weight": torch.zeros(2)}))
    with pytest.raises(CheckpointMismatchError, match=r"unexpected keys \(1\): vision_backbone\.featurizer\.head\.weight"):
        load_pretrained(tmp_path)
    save_pretrained(make_model(), tmp_path)
    _rewrite_single_file(tmp_path, lambda s: s.update({"projector.fc3.weight": torch.zeros(64, 32)}))
    with pytest.raises(CheckpointMismatchError, match=r"projector\.fc3\.weight: checkpoint \(64, 32\) vs model \(64, 64\)"):
        load_pretrained(tmp_path)


def test_statistics_errors(make_model, tmp_path):
    model = make_model()
    save_pretrained(model, tmp_path)
    loaded = load_pretrained(tmp_path, dtype=torch.float32)
    with pytest.raises(KeyError, match=r"'libero_goal' not in dataset statistics; available: \['libero_spatial_no_noops'\]"):
        loaded.sample_actions(make_frames(1), INSTRUCTIONS[:1], unnorm_key="libero_goal")
    stats = json.loads((tmp_path / "dataset_statistics.json").read_text())
    del stats["libero_spatial_no_noops"]["action"]["q01"]
    (tmp_path / "dataset_statistics.json").write_text(json.dumps(stats))
    with pytest.raises(ValueError, match=r"'q01'"):
        load_pretrained(tmp_path)


def test_bf16_load(make_model, tmp_path):
    model = make_model()
    frames = make_frames(2)
    save_pretrained(model, tmp_path)
    loaded = load_pretrained(tmp_path, dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    tokens = torch.randint(0, 256, (2, 56), generator=torch.Generator().manual_seed(0))
    ref = model.action_logprob(frames, INSTRUCTIONS[:2], tokens)
    low = loaded.action_logprob(frames, INSTRUCTIONS[:2], tokens)
    assert (low - ref).abs().mean() < 0.15
    save_pretrained(loaded, tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert load_file(tmp_path / "again" / "model.safetensors")["projector.fc1.weight"].dtype == torch.bfloat16


def test_resaving_a_loaded_checkpoint_carries_the_remote_code_files(make_model, tmp_path):
    save_pretrained(make_model(), tmp_path / "a")
    (tmp_path / "a" / "modeling_prismatic.py").write_text("# original remote code\n")
    (tmp_path / "a" / "generation_config.json").write_text("{}")
    loaded = load_pretrained(tmp_path / "a", dtype=torch.float32)
    save_pretrained(loaded, tmp_path / "b")
    assert (tmp_path / "b" / "modeling_prismatic.py").read_text() == "# original remote code\n"
    assert (tmp_path / "b" / "generation_config.json").is_file()
    assert json.loads((tmp_path / "b" / "processor_config.json").read_text())["processor_class"] == "PrismaticProcessor"


def test_stray_rotary_buffers_are_ignored(make_model, tmp_path):
    model = make_model()
    save_pretrained(model, tmp_path)
    _rewrite_single_file(tmp_path, lambda s: s.update({"language_model.model.layers.0.self_attn.rotary_emb.inv_freq": torch.ones(8)}))
    loaded = load_pretrained(tmp_path, dtype=torch.float32)
    frames = make_frames(1)
    assert torch.equal(outputs(model, frames)[1], outputs(loaded, frames)[1])
