"""Our sequence assembly and attention against a re-statement of SimpleVLA-RL's OpenVLA-OFT path.

The reference follows `generate_action_verl` step by step: BOS-prefixed, left-padded prompt ids;
56 placeholder ids and the stop id appended; padding moved to the end; action embeddings zeroed;
patches inserted after BOS; OpenVLA-OFT's patched attention (every query sees every non-pad key);
default position ids 0..L-1; full-vocabulary logits, of which `[..., -320:-64]` are the bins.
The model input itself (pixel_values, prompt ids) and the action post-processing are checked against
SimpleVLA-RL's code in test_simplevla_input_parity.py.
"""

import torch

from .conftest import INSTRUCTIONS, make_frames, make_proprio

IGNORE_INDEX = -100


def simplevla_bin_logprobs(model, obs, tokens, temperature):
    cfg = model.config
    body_ids, body_mask = obs.prompt.input_ids, obs.prompt.attention_mask.long()
    b, t = body_ids.shape
    pad = cfg.pad_token_id
    # processor output: [pad..., BOS, body] (left padded, BOS at the first real position)
    input_ids = torch.full((b, t + 1), pad, dtype=torch.long)
    attention = torch.zeros(b, t + 1, dtype=torch.long)
    for row in range(b):
        n = int(body_mask[row].sum())
        input_ids[row, t - n] = cfg.bos_token_id
        input_ids[row, t + 1 - n :] = body_ids[row, t - n :]
        attention[row, t - n :] = 1
    num_prompt_tokens = input_ids.ne(pad).sum(dim=1) - 1
    # _prepare_input_for_action_prediction: placeholder ids (ones) + stop token, mask extended with ones
    input_ids = torch.cat([input_ids, torch.ones(b, 56, dtype=torch.long), torch.full((b, 1), cfg.stop_token_id)], dim=1)
    attention = torch.cat([attention, torch.ones(b, 57, dtype=torch.long)], dim=1)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[:, -57:-1] = cfg.bin_start + 1
    labels[:, -1] = cfg.stop_token_id
    # "convert padding from before to last"
    order = torch.argsort(input_ids.ne(pad).int(), dim=1, descending=True, stable=True)
    input_ids, attention, labels = (torch.gather(x, 1, order) for x in (input_ids, attention, labels))
    actions_mask = labels > cfg.bin_start  # current | next action masks
    emb = model.language_model.model.embed_tokens(input_ids) * ~actions_mask.unsqueeze(-1)
    patches = model.projector(model.vision_backbone(obs.pixel_values))
    if model.proprio_projector is not None:
        patches = torch.cat([patches, model.proprio_projector(obs.proprio).unsqueeze(1)], dim=1)
    embeds = torch.cat([emb[:, :1], patches, emb[:, 1:]], dim=1)
    mask = torch.cat([attention[:, :1], torch.ones(b, patches.shape[1], dtype=torch.long), attention[:, 1:]], dim=1)
    # the patched Llama's mask: the causal mask's last row repeated = key padding mask for all queries
    additive = torch.zeros(b, 1, mask.shape[1], mask.shape[1])
    additive.masked_fill_(mask[:, None, None, :].eq(0), torch.finfo(torch.float32).min)
    positions = torch.arange(mask.shape[1]).expand(b, -1)
    logits = model.language_model(inputs_embeds=embeds, attention_mask=additive, position_ids=positions, use_cache=False).logits
    start = patches.shape[1] + num_prompt_tokens
    index = start[:, None] + torch.arange(56)
    action_logits = logits[torch.arange(b)[:, None], index]
    bins = action_logits[..., -256 - 64 : -64] / temperature
    return torch.log_softmax(bins, dim=-1).gather(-1, tokens[..., None])[..., 0]


def test_matches_simplevla_rl_single_image(make_model):
    model = make_model()
    frames = make_frames(3, seed=12)
    out = model.sample_actions(frames, INSTRUCTIONS, temperature=1.6, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        reference = simplevla_bin_logprobs(model, out.obs, out.tokens, 1.6)
    torch.testing.assert_close(out.logp, reference, rtol=0, atol=1e-5)


def test_matches_simplevla_rl_two_images_with_proprio(make_model):
    model = make_model(num_images=2, use_proprio=True, seed=2)
    frames = make_frames(3, num_images=2, seed=13)
    out = model.sample_actions(frames, INSTRUCTIONS, make_proprio(3), temperature=1.0, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        reference = simplevla_bin_logprobs(model, out.obs, out.tokens, 1.0)
    torch.testing.assert_close(out.logp, reference, rtol=0, atol=1e-5)
