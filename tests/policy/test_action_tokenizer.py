"""Bin index <-> token id <-> continuous action, against hand-computed values and OpenVLA's formula."""

import numpy as np
import pytest
import torch

from vlarl_fast.policy import ActionDetokenizer, OpenVLAOFTConfig, bin_centres, resolve_unnorm_key
from vlarl_fast.policy.action_tokenizer import normalise_proprio, validate_statistics

from .conftest import libero_like_stats


def test_bin_rows_are_simplevla_slice_of_the_padded_head():
    cfg = OpenVLAOFTConfig.openvla_7b()
    assert (cfg.bin_start, cfg.bin_end, cfg.vocab_size) == (31744, 32000, 32064)
    assert list(range(cfg.vocab_size))[-320:-64] == list(range(cfg.bin_start, cfg.bin_end))


def test_bin_index_matches_openvla_token_id_formula_for_every_bin():
    cfg = OpenVLAOFTConfig.openvla_7b()
    bins = np.arange(256)
    token_ids = cfg.bin_start + bins
    # OpenVLA / SimpleVLA-RL: discretized = vocab_size(32000) - token_id; clip(discretized - 1, 0, 254)
    centre_index = np.clip((cfg.vocab_size - cfg.pad_to_multiple_of) - token_ids - 1, 0, 254)
    expected = bin_centres(256)[centre_index]
    got = ActionDetokenizer(256, 8, 7).normalised(torch.from_numpy(bins)).numpy()
    np.testing.assert_array_equal(got, expected)


def test_hand_computed_table_of_bins_and_statistics():
    # centre k = (2k - 254) / 255; bin b -> k = clip(255 - b, 0, 254)
    table = {0: 254 / 255, 1: 254 / 255, 2: 252 / 255, 127: 2 / 255, 128: 0.0, 254: -252 / 255, 255: -254 / 255}
    for b, value in table.items():
        got = float(ActionDetokenizer(256, 8, 7).normalised(torch.tensor([b]))[0])
        assert got == pytest.approx(value, abs=1e-12), b

    stats = libero_like_stats()["libero_spatial_no_noops"]["action"]
    # one step: bins for the 7 dims
    step_bins = [0, 128, 255, 2, 127, 254, 0]
    tokens = torch.tensor([step_bins * 8])
    actions = ActionDetokenizer(256, 8, 7, "libero").decode(tokens, stats)
    assert actions.shape == (1, 8, 7) and actions.dtype == torch.float32
    x = [254 / 255, 0.0, -254 / 255, 252 / 255, 2 / 255, -252 / 255]
    q01, q99 = stats["q01"], stats["q99"]
    expected = [0.5 * (x[i] + 1) * (q99[i] - q01[i] + 1e-8) + q01[i] for i in range(6)]
    # by hand: dim0 range [-0.5, 1.5] -> x + 0.5; dim1 [-1, 1] -> x; dim2 [-2, 2] -> 2x
    assert expected[0] == pytest.approx(254 / 255 + 0.5, abs=1e-7)
    assert expected[2] == pytest.approx(-2 * 254 / 255, abs=1e-7)
    np.testing.assert_allclose(actions[0, 3, :6].numpy(), expected, rtol=0, atol=1e-6)
    # gripper: value 254/255 (not un-normalised, mask False) -> sign(2x - 1) = +1 -> inverted -> -1
    assert float(actions[0, 0, 6]) == -1.0


def test_gripper_sign_and_no_gripper_mode():
    stats = libero_like_stats()["libero_spatial_no_noops"]["action"]
    tokens = torch.full((2, 56), 200)  # centre index 55 -> (110 - 254)/255 < 0.5 -> close (+1)
    tokens[1] = 0  # top bin -> open (-1)
    libero = ActionDetokenizer(256, 8, 7, "libero").decode(tokens, stats)
    raw = ActionDetokenizer(256, 8, 7, "none").decode(tokens, stats)
    assert torch.all(libero[0, :, 6] == 1.0) and torch.all(libero[1, :, 6] == -1.0)
    assert float(raw[0, 0, 6]) == pytest.approx((2 * 55 - 254) / 255, abs=1e-6)
    torch.testing.assert_close(libero[..., :6], raw[..., :6])


def test_unnorm_key_resolution_and_errors():
    stats = libero_like_stats()
    assert resolve_unnorm_key(stats, None) == "libero_spatial_no_noops"
    assert resolve_unnorm_key(stats, "libero_spatial") == "libero_spatial_no_noops"
    with pytest.raises(KeyError, match="libero_10.*available.*libero_spatial_no_noops"):
        resolve_unnorm_key(stats, "libero_10")
    two = {**stats, "other": stats["libero_spatial_no_noops"]}
    with pytest.raises(KeyError, match="several datasets"):
        resolve_unnorm_key(two, None)


def test_statistics_validation_names_the_field():
    stats = libero_like_stats()
    del stats["libero_spatial_no_noops"]["action"]["q99"]
    with pytest.raises(ValueError, match=r"libero_spatial_no_noops.*'q99'"):
        validate_statistics(stats, 7)
    short = libero_like_stats()
    short["libero_spatial_no_noops"]["action"]["q01"] = [0.0] * 6
    with pytest.raises(ValueError, match="expected 7 values, got 6"):
        validate_statistics(short, 7)


def test_proprio_normalisation_by_hand():
    stats = {"q01": [-1.0, 0.0, 0.0], "q99": [3.0, 2.0, 1.0], "mask": [True, True, False]}
    p = torch.tensor([[1.0, 5.0, 7.0], [-1.0, -3.0, 0.25]])
    got = normalise_proprio(p, stats)
    expected = torch.tensor([[0.0, 1.0, 1.0], [-1.0, -1.0, 0.25]])  # clip applies to masked-out dims too
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
