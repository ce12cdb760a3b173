"""Checkpoints: the policy in its official layout plus everything an exact resume needs.

    <out_dir>/checkpoints/step_000010/
        policy/                 `vlarl_fast.policy.save_pretrained` (config.json, safetensors, stats, tokenizer)
        trainer_state.pt        optimizer state (full, unsharded), step, RNG states, config, eval history
    <out_dir>/checkpoints/latest   text file naming the newest complete checkpoint

Writes are atomic: everything goes to a temporary sibling directory which is renamed into place,
then `latest` is replaced with os.replace. A run killed at any moment leaves either the previous
or the new checkpoint, never a partial one. Only rank 0 writes; all ranks read.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from vlarl_fast.policy import load_pretrained, save_pretrained
from vlarl_fast.rl.distributed import DistInfo, barrier, full_state_dict


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def _full_optimizer_state(model, optimizer, info: DistInfo) -> dict:
    if not info.enabled:
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_checkpoint(out_dir: str | Path, step: int, model, optimizer, info: DistInfo, *, policy_template,
                    extra: dict) -> Path | None:
    """Collective (every rank calls it); rank 0 writes. Returns the checkpoint path on rank 0."""
    weights = full_state_dict(model, info)
    optim = _full_optimizer_state(model, optimizer, info)
    path = None
    if info.is_main:
        root = Path(out_dir) / "checkpoints"
        root.mkdir(parents=True, exist_ok=True)
        name = f"step_{step:06d}"
        tmp = root / f".{name}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        policy_template.load_state_dict(weights)
        save_pretrained(policy_template, tmp / "policy", stats=policy_template.norm_stats,
                        tokenizer=policy_template.tokenizer)
        torch.save({"step": step, "optimizer": optim, "rng": rng_state(), **extra}, tmp / "trainer_state.pt")
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        latest_tmp = root / ".latest.tmp"
        latest_tmp.write_text(name)
        os.replace(latest_tmp, root / "latest")
        path = final
    barrier(info)
    return path


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    pointer = Path(out_dir) / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    path = pointer.parent / pointer.read_text().strip()
    return path if path.is_dir() else None


def load_policy_weights(path: Path) -> dict[str, torch.Tensor]:
    return load_pretrained(path / "policy", dtype=torch.float32, device="cpu").state_dict()


def load_trainer_state(path: Path) -> dict:
    return torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=False)


def restore(path: Path, model, optimizer, info: DistInfo) -> dict:
    """Loads weights and optimizer state into the (possibly sharded) model; returns the trainer state."""
    weights = load_policy_weights(path)
    state = load_trainer_state(path)
    if info.enabled:
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                             set_optimizer_state_dict)

        opts = StateDictOptions(full_state_dict=True)
        set_model_state_dict(model, weights, options=opts)
        set_optimizer_state_dict(model, optimizer, state["optimizer"], options=opts)
    else:
        model.load_state_dict(weights)
        optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    return state
