"""Action bins <-> continuous actions (OpenVLA's ActionTokenizer and OFT's LIBERO post-processing).

OpenVLA discretises a normalised action value into bin k in 1..256 of `np.linspace(-1, 1, 256)` and
writes it as token id `V0 - k`, where V0 = 32000 is Llama-2's unpadded vocabulary. This code works
with the *bin index* b in 0..255, the position inside the LM-head slice `[V0 - 256, V0)` (SimpleVLA-RL's
`logits[..., -320:-64]` of the 32064-row padded head):

    token id          = V0 - 256 + b                      (= config.bin_start + b)
    k = V0 - token id = 256 - b
    bin-centre index  = clip(k - 1, 0, 254) = clip(255 - b, 0, 254)
    normalised value  = bin_centres[bin-centre index],  bin_centres = midpoints of linspace(-1, 1, 256)

so b = 0 and b = 1 both decode to the top centre (+0.99608) and b = 255 to the bottom (-0.99608).
Un-normalisation (BOUNDS_Q99, with OFT's +1e-8): `a = 0.5 (x + 1)(q99 - q01 + 1e-8) + q01` where the
statistics' `mask` is true, `a = x` elsewhere (LIBERO's gripper). The LIBERO gripper step
(`gripper_mode="libero"`): `g -> sign(2 g - 1)` (normalize_gripper_action, binarize) then `-g`
(invert_gripper_action), giving -1 = open, +1 = close as the LIBERO environment expects.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch


def bin_centres(n_action_bins: int = 256) -> np.ndarray:
    bins = np.linspace(-1.0, 1.0, n_action_bins)
    return (bins[:-1] + bins[1:]) / 2.0


def resolve_unnorm_key(norm_stats: Mapping[str, Any], unnorm_key: str | None) -> str:
    """SimpleVLA-RL's key resolution: None picks the single dataset; `key` falls back to `key_no_noops`."""
    if not norm_stats:
        raise KeyError("unnorm_key: the model has no dataset statistics (dataset_statistics.json was empty or missing)")
    if unnorm_key is None:
        if len(norm_stats) != 1:
            raise KeyError(f"unnorm_key: required because the statistics hold several datasets: {sorted(norm_stats)}")
        return next(iter(norm_stats))
    if unnorm_key not in norm_stats and f"{unnorm_key}_no_noops" in norm_stats:
        return f"{unnorm_key}_no_noops"
    if unnorm_key not in norm_stats:
        raise KeyError(f"unnorm_key: {unnorm_key!r} not in dataset statistics; available: {sorted(norm_stats)}")
    return unnorm_key


def validate_statistics(norm_stats: Mapping[str, Any], action_dim: int) -> None:
    """Raise ValueError naming the dataset and field when action statistics are unusable."""
    for key, entry in norm_stats.items():
        if "action" not in entry:
            raise ValueError(f"dataset statistics[{key!r}]: missing 'action' entry (has {sorted(entry)})")
        for field in ("q01", "q99"):
            if field not in entry["action"]:
                raise ValueError(f"dataset statistics[{key!r}]['action']: missing {field!r} (has {sorted(entry['action'])})")
            got = len(entry["action"][field])
            if got != action_dim:
                raise ValueError(f"dataset statistics[{key!r}]['action'][{field!r}]: expected {action_dim} values, got {got}")


class ActionDetokenizer:
    """Batched, on-device decoding of bin indices `[..., chunk_len * action_dim]` to `[..., chunk_len, action_dim]`."""

    def __init__(self, n_action_bins: int, chunk_len: int, action_dim: int, gripper_mode: str = "libero"):
        self.n_action_bins = n_action_bins
        self.chunk_len = chunk_len
        self.action_dim = action_dim
        self.gripper_mode = gripper_mode
        self._centres = torch.from_numpy(bin_centres(n_action_bins))

    def normalised(self, bins: torch.Tensor) -> torch.Tensor:
        """Bin indices (0..n_action_bins-1) -> normalised values in [-1, 1], float64."""
        centre_index = (self.n_action_bins - 1 - bins.long()).clamp(0, self.n_action_bins - 2)
        return self._centres.to(bins.device)[centre_index]

    def decode(self, bins: torch.Tensor, action_stats: Mapping[str, Any]) -> torch.Tensor:
        values = self.normalised(bins).reshape(*bins.shape[:-1], self.chunk_len, self.action_dim)
        dev = values.device
        q01 = torch.as_tensor(np.asarray(action_stats["q01"], dtype=np.float64), device=dev)
        q99 = torch.as_tensor(np.asarray(action_stats["q99"], dtype=np.float64), device=dev)
        mask = torch.as_tensor(np.asarray(action_stats.get("mask", [True] * self.action_dim), dtype=bool), device=dev)
        actions = torch.where(mask, 0.5 * (values + 1.0) * (q99 - q01 + 1e-8) + q01, values)
        if self.gripper_mode == "libero":
            gripper = -torch.sign(2.0 * actions[..., -1] - 1.0)
            actions = torch.cat([actions[..., :-1], gripper.unsqueeze(-1)], dim=-1)
        return actions.float()


def normalise_proprio(proprio: torch.Tensor, proprio_stats: Mapping[str, Any]) -> torch.Tensor:
    """OFT's `normalize_proprio` (BOUNDS_Q99): clip(2 (p - q01) / (q99 - q01 + 1e-8) - 1, -1, 1) where masked."""
    dev = proprio.device
    q01 = torch.as_tensor(np.asarray(proprio_stats["q01"], dtype=np.float64), device=dev)
    q99 = torch.as_tensor(np.asarray(proprio_stats["q99"], dtype=np.float64), device=dev)
    mask = torch.as_tensor(np.asarray(proprio_stats.get("mask", [True] * q01.shape[0]), dtype=bool), device=dev)
    p = proprio.double()
    out = torch.where(mask, 2.0 * (p - q01) / (q99 - q01 + 1e-8) - 1.0, p).clamp(-1.0, 1.0)
    return out.to(proprio.dtype if proprio.is_floating_point() else torch.float32)
