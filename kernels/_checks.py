"""Argument validation shared by the ops: every error names the argument, expected and actual."""

from __future__ import annotations

import math

import torch

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
LABEL_DTYPES = (torch.int64, torch.int32, torch.int16, torch.uint8)

# Below this the scaled logits of realistic hidden states overflow float32 gradients.
MIN_TEMPERATURE = 1e-6


def check_float(name: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have a floating dtype in {FLOAT_DTYPES}, got {t.dtype}")


def check_temperature(temperature: float) -> float:
    if isinstance(temperature, torch.Tensor):
        if temperature.numel() != 1:
            raise ValueError(f"temperature must be a scalar, got shape {tuple(temperature.shape)}")
        temperature = float(temperature)
    temperature = float(temperature)
    if not math.isfinite(temperature) or temperature < MIN_TEMPERATURE:
        raise ValueError(
            f"temperature must be finite and >= {MIN_TEMPERATURE} (use argmax for greedy "
            f"decoding), got {temperature}"
        )
    return temperature


def check_bins(bin_start: int, bin_end: int, vocab_size: int, what: str) -> int:
    if not (0 <= bin_start < bin_end <= vocab_size):
        raise ValueError(
            f"bin_start/bin_end must satisfy 0 <= bin_start < bin_end <= {what} ({vocab_size}), "
            f"got bin_start={bin_start}, bin_end={bin_end}"
        )
    return bin_end - bin_start


def check_labels(labels: torch.Tensor, expected_shape: tuple, n_bins: int) -> None:
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype not in LABEL_DTYPES:
        raise TypeError(f"labels must have an integer dtype in {LABEL_DTYPES}, got {labels.dtype}")
    if tuple(labels.shape) != tuple(expected_shape):
        raise ValueError(f"labels must have shape {tuple(expected_shape)}, got {tuple(labels.shape)}")
    # one host sync per call; skipped while torch.compile traces, where no host sync is wanted
    # (out-of-range labels are then the caller's bug: the Triton kernels return a finite but
    # meaningless log-prob, torch's gather raises)
    if labels.numel() and not torch.compiler.is_compiling():
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= n_bins:
            raise ValueError(
                f"labels must be bin indices in [0, {n_bins - 1}], got values in [{lo}, {hi}]"
            )


def check_same_device(**tensors: torch.Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        raise ValueError(f"all tensors must be on one device, got {devices}")
