"""Parallel decoding, rollout/training log-prob agreement, layout, gradients, variants."""

import numpy as np
import pytest
import torch

from vlarl_fast.policy import Observation, OpenVLAOFTConfig

from .conftest import INSTRUCTIONS, make_frames, make_proprio


def count_calls(module: torch.nn.Module) -> list:
    calls = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_tiny_preset_is_small_and_fast(make_model):
    import time

    from torch.utils.flop_counter import FlopCounterMode

    model = make_model()
    frames = make_frames(2)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    with FlopCounterMode(display=False) as flops:
        model.sample_actions(frames, INSTRUCTIONS[:2])
    assert flops.get_total_flops() < 1e8  # 0.1 GFLOP: milliseconds of one CPU core
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # single thread: stable on shared, oversubscribed CI machines
    try:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            model.sample_actions(frames, INSTRUCTIONS[:2])
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    assert min(times) < 0.5, times


def test_parallel_decoding_is_one_forward_pass(make_model):
    model = make_model()
    lm_calls = count_calls(model.language_model.model)
    vision_calls = count_calls(model.vision_backbone)
    out = model.sample_actions(make_frames(3), INSTRUCTIONS, generator=torch.Generator().manual_seed(0))
    assert len(lm_calls) == 1 and len(vision_calls) == 1
    assert out.tokens.shape == (3, 56) and out.tokens.dtype == torch.int64
    assert int(out.tokens.min()) >= 0 and int(out.tokens.max()) <= 255
    assert out.logp.shape == (3, 56) and out.logp.dtype == torch.float32 and torch.all(out.logp <= 0)
    assert out.actions.shape == (3, 8, 7) and out.actions.dtype == torch.float32


def test_sequence_layout_bos_vision_prompt_empty_actions_stop(make_model):
    model = make_model()
    seen = {}
    model.language_model.model.register_forward_pre_hook(lambda m, a, kw: seen.update(kw), with_kwargs=True)
    obs = model.prepare(make_frames(3), INSTRUCTIONS)
    model.action_hidden_states(obs)
    emb = model.language_model.model.embed_tokens.weight
    x, pos = seen["inputs_embeds"], seen["position_ids"]
    cfg = model.config
    n_vis, t = cfg.num_vision_tokens, obs.prompt.input_ids.shape[1]
    assert x.shape[1] == 1 + n_vis + t + 56 + 1
    torch.testing.assert_close(x[:, 0], emb[cfg.bos_token_id].expand(3, -1), rtol=0, atol=0)
    torch.testing.assert_close(x[:, -1], emb[cfg.stop_token_id].expand(3, -1), rtol=0, atol=0)
    assert torch.all(x[:, 1 + n_vis + t : -1] == 0)  # the 56 action inputs are empty
    lengths = obs.prompt.attention_mask.sum(1)
    for row in range(3):  # positions count real tokens only: action slots start after the prompt
        assert int(pos[row, 1 + n_vis + t]) == 1 + n_vis + int(lengths[row])
    assert int(pos[:, -1].max()) == 1 + n_vis + int(lengths.max()) + 56


def test_action_distribution_ignores_the_given_action_tokens(make_model):
    model = make_model()
    frames = make_frames(2, seed=1)
    a = torch.randint(0, 256, (2, 56), generator=torch.Generator().manual_seed(1))
    b = torch.randint(0, 256, (2, 56), generator=torch.Generator().manual_seed(2))
    logp_a, ent_a = model.action_logprob(frames, INSTRUCTIONS[:2], a, return_entropy=True)
    logp_b, ent_b = model.action_logprob(frames, INSTRUCTIONS[:2], b, return_entropy=True)
    torch.testing.assert_close(ent_a, ent_b, rtol=0, atol=0)
    # every position's full distribution, from one forward: logp of any label is a lookup in it
    hidden = model.action_hidden_states(model.prepare(frames, INSTRUCTIONS[:2]))
    cfg = model.config
    w = model.language_model.lm_head.weight[cfg.bin_start : cfg.bin_end]
    dist = torch.log_softmax(hidden @ w.T / 1.6, dim=-1)
    torch.testing.assert_close(logp_a, dist.gather(-1, a[..., None])[..., 0], rtol=0, atol=1e-5)
    torch.testing.assert_close(logp_b, dist.gather(-1, b[..., None])[..., 0], rtol=0, atol=1e-5)
    assert not torch.allclose(ent_a[:, 0], ent_a[:, 30])  # positions differ (RoPE + bidirectional context)


def test_attention_is_bidirectional(make_model):
    """The STOP token comes after every action slot: it can only matter if attention looks ahead."""
    model = make_model()
    obs = model.prepare(make_frames(2), INSTRUCTIONS[:2])
    before = model.action_hidden_states(obs)
    with torch.no_grad():
        model.language_model.model.embed_tokens.weight[model.config.stop_token_id].add_(1.0)
    after = model.action_hidden_states(obs)
    assert (before - after).abs().amax(dim=-1).min() > 1e-4  # every one of the 56 positions sees it


def test_rollout_logp_equals_training_logp(make_model):
    model = make_model()
    frames = make_frames(3, height=20, width=24, seed=5)
    out = model.sample_actions(frames, INSTRUCTIONS, temperature=1.6, generator=torch.Generator().manual_seed(3))
    model.train()
    from_raw = model.action_logprob(frames, INSTRUCTIONS, out.tokens, temperature=1.6)
    from_obs = model.action_logprob(out.obs, None, out.tokens, temperature=1.6)
    assert from_raw.requires_grad
    torch.testing.assert_close(from_raw.detach(), out.logp, rtol=0, atol=1e-5)
    torch.testing.assert_close(from_obs.detach(), out.logp, rtol=0, atol=1e-5)
    kept = model.model_images(frames)  # what the rollout stores for the update
    from_kept = model.action_logprob(kept, INSTRUCTIONS, out.tokens, temperature=1.6)
    assert torch.equal(from_kept, from_raw)
    resampled = model.sample_actions(kept, INSTRUCTIONS, temperature=1.6, generator=torch.Generator().manual_seed(3))
    assert torch.equal(resampled.tokens, out.tokens) and torch.equal(resampled.logp, out.logp)


def test_padding_does_not_change_a_sample(make_model):
    model = make_model()
    frames = make_frames(3, seed=7)
    tokens = torch.randint(0, 256, (3, 56), generator=torch.Generator().manual_seed(0))
    batched = model.action_logprob(frames, INSTRUCTIONS, tokens)
    for row in range(3):
        alone = model.action_logprob(frames[row : row + 1], INSTRUCTIONS[row : row + 1], tokens[row : row + 1])
        torch.testing.assert_close(batched[row : row + 1], alone, rtol=0, atol=1e-5)


def test_greedy_sampling_and_temperature(make_model):
    model = make_model()
    frames = make_frames(2, seed=2)
    greedy = model.sample_actions(frames, INSTRUCTIONS[:2], greedy=True, temperature=1.0)
    hidden = model.action_hidden_states(greedy.obs)
    cfg = model.config
    logits = hidden @ model.language_model.lm_head.weight[cfg.bin_start : cfg.bin_end].T
    assert torch.equal(greedy.tokens, logits.argmax(-1))
    s1 = model.sample_actions(frames, INSTRUCTIONS[:2], generator=torch.Generator().manual_seed(9))
    s2 = model.sample_actions(frames, INSTRUCTIONS[:2], generator=torch.Generator().manual_seed(9))
    s3 = model.sample_actions(frames, INSTRUCTIONS[:2], generator=torch.Generator().manual_seed(10))
    assert torch.equal(s1.tokens, s2.tokens) and not torch.equal(s1.tokens, s3.tokens)
    hot = model.action_logprob(frames, INSTRUCTIONS[:2], greedy.tokens, temperature=1.6)
    cold = model.action_logprob(frames, INSTRUCTIONS[:2], greedy.tokens, temperature=0.5)
    assert torch.all(cold >= hot - 1e-6)  # sharpening raises the argmax's probability


def test_sampling_follows_the_bin_distribution(make_model):
    model = make_model()
    frames = np.repeat(make_frames(1, seed=4), 400, axis=0)
    out = model.sample_actions(frames, INSTRUCTIONS[:1] * 400, temperature=1.6, generator=torch.Generator().manual_seed(0))
    probs = out.logp[:, 0].exp()
    # empirical frequency of the most common token at position 0 vs its model probability
    values, counts = out.tokens[:, 0].unique(return_counts=True)
    top = values[counts.argmax()]
    p_model = float(probs[out.tokens[:, 0] == top][0])
    assert abs(float(counts.max()) / 400 - p_model) < 4 * np.sqrt(p_model * (1 - p_model) / 400) + 1e-3


def test_gradients_reach_trainable_parts_and_only_bin_rows_of_the_head(make_model):
    model = make_model()
    model.train()
    tokens = torch.randint(0, 256, (2, 56), generator=torch.Generator().manual_seed(0))
    logp, ent = model.action_logprob(make_frames(2), INSTRUCTIONS[:2], tokens, return_entropy=True)
    (logp.sum() + 0.1 * ent.sum()).backward()
    cfg = model.config
    head_grad = model.language_model.lm_head.weight.grad
    assert head_grad[cfg.bin_start : cfg.bin_end].abs().sum() > 0
    assert head_grad[: cfg.bin_start].abs().sum() == 0 and head_grad[cfg.bin_end :].abs().sum() == 0
    for name in ["projector.fc1.weight", "language_model.model.layers.0.self_attn.q_proj.weight",
                 "vision_backbone.featurizer.blocks.0.attn.qkv.weight", "vision_backbone.fused_featurizer.patch_embed.proj.weight",
                 "vision_backbone.featurizer.blocks.0.ls1.scale_factor"]:
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert "vision_backbone.fused_featurizer.attn_pool.latent" in frozen
    assert f"vision_backbone.featurizer.blocks.{cfg.vision[0].depth - 1}.mlp.fc1.weight" in frozen
    assert all(model.get_parameter(n).grad is None for n in frozen)


def test_two_images_and_proprio_token(make_model):
    model = make_model(num_images=2, use_proprio=True)
    frames = make_frames(2, num_images=2, seed=11)
    proprio = make_proprio(2)
    out = model.sample_actions(frames, INSTRUCTIONS[:2], proprio, generator=torch.Generator().manual_seed(0))
    assert model.config.num_vision_tokens == 2 * 16 + 1
    assert out.obs.pixel_values.shape == (2, 2, 6, 16, 16) and out.obs.proprio.shape == (2, 8)
    assert float(out.obs.proprio.abs().max()) <= 1.0  # normalised with the statistics' q01/q99
    logp = model.action_logprob(frames, INSTRUCTIONS[:2], out.tokens, proprio)
    torch.testing.assert_close(logp, out.logp, rtol=0, atol=1e-5)
    other_state = model.action_logprob(frames, INSTRUCTIONS[:2], out.tokens, proprio * 0.5)
    swapped = model.action_logprob(np.ascontiguousarray(frames[:, ::-1]), INSTRUCTIONS[:2], out.tokens, proprio)
    assert (other_state - logp).abs().max() > 1e-4 and (swapped - logp).abs().max() > 1e-4
    with pytest.raises(ValueError, match="proprio.*required"):
        model.sample_actions(frames, INSTRUCTIONS[:2])


def test_argument_errors(make_model):
    model = make_model()
    frames = make_frames(2)
    with pytest.raises(ValueError, match=r"tokens must have shape \(2, 56\), got \(2, 55\)"):
        model.action_logprob(frames, INSTRUCTIONS[:2], torch.zeros(2, 55, dtype=torch.long))
    with pytest.raises(ValueError, match="batch sizes differ"):
        model.sample_actions(frames, INSTRUCTIONS[:3])
    with pytest.raises(ValueError, match="use_proprio=False"):
        model.sample_actions(frames, INSTRUCTIONS[:2], make_proprio(2))
    with pytest.raises(KeyError, match="available"):
        model.sample_actions(frames, INSTRUCTIONS[:2], unnorm_key="bridge_orig")
    obs = model.prepare(frames, INSTRUCTIONS[:2])
    assert isinstance(obs, Observation)
    with pytest.raises(ValueError, match="Observation"):
        model.action_logprob(obs, INSTRUCTIONS[:2], torch.zeros(2, 56, dtype=torch.long))


def test_bf16_model_tracks_fp32(make_model):
    model = make_model()
    frames = make_frames(2, seed=6)
    tokens = torch.randint(0, 256, (2, 56), generator=torch.Generator().manual_seed(0))
    ref = model.action_logprob(frames, INSTRUCTIONS[:2], tokens)
    model.to(torch.bfloat16)
    out = model.sample_actions(frames, INSTRUCTIONS[:2], generator=torch.Generator().manual_seed(0))
    assert out.obs.pixel_values.dtype == torch.bfloat16 and out.logp.dtype == torch.float32
    low = model.action_logprob(frames, INSTRUCTIONS[:2], tokens)
    assert low.dtype == torch.float32
    assert (low - ref).abs().mean() < 0.15


def test_config_validation_messages():
    cfg = OpenVLAOFTConfig.tiny()
    with pytest.raises(ValueError, match="crop_scale"):
        cfg.replace(crop_scale=0.0)
    with pytest.raises(ValueError, match="num_images"):
        cfg.replace(num_images=4)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        OpenVLAOFTConfig.tiny(image_size=18)
    with pytest.raises(ValueError, match="gripper_mode"):
        cfg.replace(gripper_mode="aloha")
    with pytest.raises(ValueError, match="vocab_size"):
        cfg.replace(n_action_bins=1000)


def test_gradient_checkpointing_gives_the_same_gradients(make_model):
    frames = make_frames(2, seed=8)
    tokens = torch.randint(0, 256, (2, 56), generator=torch.Generator().manual_seed(4))
    grads, saved_bytes = [], []
    for enabled in (False, True):
        model = make_model(seed=3)
        model.train()
        model.gradient_checkpointing_enable(enabled)
        saved = []

        def pack(t):
            saved.append(t.numel() * t.element_size())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            logp = model.action_logprob(frames, INSTRUCTIONS[:2], tokens)
        logp.sum().backward()
        saved_bytes.append(sum(saved))
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert saved_bytes[1] < 0.6 * saved_bytes[0], saved_bytes  # activations really are recomputed
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 50
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6, msg=name)


def test_module_call_is_the_training_logprob(make_model):
    model = make_model()
    frames = make_frames(2, seed=9)
    tokens = torch.randint(0, 256, (2, 56), generator=torch.Generator().manual_seed(7))
    logp, ent = model(frames, INSTRUCTIONS[:2], tokens, temperature=1.3, return_entropy=True)
    ref_logp, ref_ent = model.action_logprob(frames, INSTRUCTIONS[:2], tokens, temperature=1.3, return_entropy=True)
    assert torch.equal(logp, ref_logp) and torch.equal(ent, ref_ent)
    assert logp.shape == ent.shape == (2, 56) and torch.all(ent > 0) and torch.all(ent <= np.log(256) + 1e-5)
