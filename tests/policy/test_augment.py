"""OpenVLA's training-time image augmentation (`vlarl_fast.policy.augment`): the crop at the centre is
the processor's centre crop, HSV round trips agree with Python's `colorsys`, each op stays within the
range OpenVLA draws from, draws are reproducible and per sample, and SFT trains with it."""

import colorsys

import numpy as np
import pytest
import torch

from vlarl_fast.policy.augment import ImageAugment, hsv_to_rgb, random_square_crop, rgb_to_hsv
from vlarl_fast.policy.processor import INV_255, center_crop_resize

NO_JITTER = dict(brightness=0.0, contrast=(1.0, 1.0), saturation=(1.0, 1.0), hue=0.0)


def _levels(seed: int, b: int = 5, n: int = 1, s: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, n, s, s, 3), generator=g, dtype=torch.uint8)


def test_crop_at_the_centre_is_the_processors_centre_crop():
    levels = _levels(1, b=4, s=32)
    x = levels.reshape(4, 32, 32, 3).permute(0, 3, 1, 2).float() * INV_255
    ours = random_square_crop(x, 0.9, torch.zeros(4, 2))
    ref = center_crop_resize(x, 0.9)
    assert torch.allclose(ours, ref, atol=2e-6), float((ours - ref).abs().max())


def test_crop_positions_reach_the_edges():
    """Position -1 puts the box's first sample on pixel 0, +1 its last on the last pixel."""
    ramp = torch.arange(32, dtype=torch.float32).expand(1, 3, 32, 32).contiguous()  # x = column index
    left = random_square_crop(ramp, 0.9, torch.tensor([[-1.0, 0.0]]))
    right = random_square_crop(ramp, 0.9, torch.tensor([[1.0, 0.0]]))
    assert float(left[0, 0, 0, 0]) == pytest.approx(0.0, abs=1e-4)
    assert float(right[0, 0, 0, -1]) == pytest.approx(31.0, abs=1e-4)
    side = float(right[0, 0, 0, -1] - right[0, 0, 0, 0])  # the box spans sqrt(0.9) of (W - 1)
    assert side == pytest.approx(31 * np.sqrt(np.float32(0.9)), rel=1e-5)


def test_identity_settings_return_the_input():
    levels = _levels(2)
    out = ImageAugment(crop_scale=None, **NO_JITTER)(levels, torch.Generator().manual_seed(0))
    assert torch.equal(out, levels)


def test_hsv_round_trip_agrees_with_colorsys():
    rgb = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    rgb[0, :, 0, 0] = torch.tensor([0.5, 0.5, 0.5])  # grey: hue and saturation 0
    rgb[0, :, 0, 1] = 0.0  # black
    h, s, v = rgb_to_hsv(rgb)
    for i in range(8):
        for j in range(8):
            ref = colorsys.rgb_to_hsv(*rgb[0, :, i, j].tolist())
            assert (float(h[0, i, j]), float(s[0, i, j]), float(v[0, i, j])) == pytest.approx(ref, abs=1e-6)
    assert torch.allclose(hsv_to_rgb(h, s, v), rgb, atol=1e-6)


@pytest.mark.parametrize("op", ["brightness", "contrast", "saturation", "hue"])
def test_each_jitter_stays_in_openvlas_range_and_varies_per_sample(op):
    b = 64
    levels = _levels(4, b=b)
    kwargs = dict(NO_JITTER)
    kwargs[op] = ImageAugment.__dataclass_fields__[op].default
    out = ImageAugment(crop_scale=None, **kwargs)(levels, torch.Generator().manual_seed(5))
    x = levels.float().reshape(b, -1, 3) / 255
    y = out.float().reshape(b, -1, 3) / 255
    if op == "brightness":  # one delta per image in [-0.2, 0.2] (where nothing clips)
        inner = (x > 0.25) & (x < 0.75)
        deltas = torch.stack([(y[i] - x[i])[inner[i]].median() for i in range(b)])
        assert float(deltas.abs().max()) <= 0.2 + 2 / 255
        assert float(deltas.min()) < -0.1 and float(deltas.max()) > 0.1
    elif op == "contrast":  # deviation from the channel mean scaled by one factor in [0.8, 1.2]
        dx, dy = x - x.mean(1, keepdim=True), y - y.mean(1, keepdim=True)
        factor = (dx * dy).sum((1, 2)) / (dx * dx).sum((1, 2))
        assert float(factor.min()) >= 0.8 - 0.02 and float(factor.max()) <= 1.2 + 0.02
        assert float(factor.max() - factor.min()) > 0.2
    else:
        hx, sx, vx = rgb_to_hsv(x.reshape(b, 32, 32, 3).permute(0, 3, 1, 2))
        hy, sy, vy = rgb_to_hsv(y.reshape(b, 32, 32, 3).permute(0, 3, 1, 2))
        assert torch.allclose(vx, vy, atol=2.5 / 255)  # value untouched
        ok = (sx > 0.3) & (vx > 0.3)
        if op == "saturation":
            ratio = torch.stack([(sy[i] / sx[i])[ok[i] & (sx[i] < 0.8)].median() for i in range(b)])
            assert float(ratio.min()) >= 0.8 - 0.02 and float(ratio.max()) <= 1.2 + 0.02
            assert float(ratio.max() - ratio.min()) > 0.2
        else:
            shift = torch.remainder(hy - hx + 0.5, 1.0) - 0.5
            per_image = torch.stack([shift[i][ok[i]].median() for i in range(b)])
            assert float(per_image.abs().max()) <= 0.05 + 0.01
            assert float(per_image.max() - per_image.min()) > 0.05


def test_draws_are_reproducible_and_per_sample():
    levels = _levels(6, b=1).expand(8, -1, -1, -1, -1).contiguous()  # 8 copies of one image
    aug = ImageAugment()
    a = aug(levels, torch.Generator().manual_seed(7))
    b = aug(levels, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert len({bytes(a[i].numpy()) for i in range(8)}) == 8


def test_bad_input_and_settings_are_named():
    with pytest.raises(ValueError, match="uint8 levels"):
        ImageAugment()(torch.zeros(2, 1, 8, 8, 3))
    with pytest.raises(ValueError, match="crop_scale"):
        ImageAugment(crop_scale=1.5)
    with pytest.raises(ValueError, match="contrast"):
        ImageAugment(contrast=(1.2, 0.8))


def test_sft_trains_through_the_augmentation():
    """SFT with augmentation draws new images every step (its losses differ from a run without it)
    and still learns what the images say: dark frames map to one action sequence, bright ones to
    another, and the trained model, shown the centre-cropped frames, prefers the right one."""
    from vlarl_fast.rl.policy_setup import build_policy
    from vlarl_fast.rl.sft import train_sft

    frames = torch.randint(0, 70, (16, 1, 64, 64, 3), generator=torch.Generator().manual_seed(8), dtype=torch.uint8)
    frames[8:] += 180
    bright = (torch.arange(16) >= 8).long()
    sequences = torch.randint(0, 256, (2, 56), generator=torch.Generator().manual_seed(9))
    prompts = ["put the bowl on the stove"] * 16
    losses = {}
    for name, aug, steps in (("plain", None, 3), ("augmented", ImageAugment(), 100)):
        model = build_policy(32, 0, stats_key="builtin_table")
        losses[name] = train_sft(model, frames, prompts, sequences[bright], steps=steps, lr=3e-3, batch_size=8,
                                 generator=torch.Generator().manual_seed(10), augment=aug)
    assert losses["plain"][0] == pytest.approx(losses["augmented"][0], rel=0.01)  # same init and batch
    assert all(p != a for p, a in zip(losses["plain"][1:], losses["augmented"][1:3]))
    assert np.mean(losses["augmented"][-10:]) < 0.5 * losses["augmented"][0]
    model.eval()
    with torch.no_grad():
        images = model.model_images(frames)
        right = model(images, prompts, sequences[bright], None, temperature=1.0).sum(-1)
        wrong = model(images, prompts, sequences[1 - bright], None, temperature=1.0).sum(-1)
    assert bool((right > wrong).all()), (right - wrong).tolist()
