"""Checkpoints as a transaction: the policy in its official layout plus everything an exact resume
needs, verified before it is trusted.

    <out_dir>/checkpoints/step_000010/
        policy/                 `vlarl_fast.policy.save_pretrained` (config.json, safetensors, stats, tokenizer)
        trainer_state.pt        optimizer state (full, unsharded), step, RNG states, config, eval history
        manifest.json           size and sha256 of every file above, written last
    <out_dir>/checkpoints/latest   text file naming the newest complete checkpoint

A save writes everything into a temporary sibling directory (fsynced), adds the manifest, renames
the directory into place, and only then replaces `latest` (os.replace, fsynced): a run killed at
any moment leaves the previous checkpoint or the new one, never a partial one. A failed write (a
full disk) removes the temporary directory and raises an error naming the file. On resume,
`latest_checkpoint` verifies the checkpoint `latest` names against its manifest; a dangling or
corrupt pointer, or a checkpoint whose files no longer match, falls back to the newest complete
checkpoint that verifies, and says so. Only rank 0 writes; all ranks read.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import warnings
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


MANIFEST = "manifest.json"


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read; the message names the file."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(directory: Path) -> dict:
    """Size and sha256 of every file under `directory` (fsynced), then the manifest itself."""
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST):
        _fsync(path)
        files[str(path.relative_to(directory))] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
    manifest = {"format": 1, "files": files}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1))
    _fsync(directory / MANIFEST)
    return manifest


def verify_checkpoint(directory: Path) -> str | None:
    """None if every file of the manifest is there with its size and sha256; else what is wrong,
    naming the file."""
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        return f"{manifest_path} is missing (an incomplete or pre-manifest checkpoint)"
    try:
        files = json.loads(manifest_path.read_text())["files"]
    except (ValueError, KeyError, TypeError) as exc:
        return f"{manifest_path} is unreadable ({exc})"
    for rel, meta in files.items():
        path = directory / rel
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != meta["bytes"]:
            return f"{path} has {path.stat().st_size} bytes, the manifest says {meta['bytes']} (truncated?)"
        if _sha256(path) != meta["sha256"]:
            return f"{path} does not match its sha256 in {manifest_path} (corrupted)"
    for required in ("policy/config.json", "trainer_state.pt"):
        if required not in files:
            return f"{directory / required} is not in the manifest"
    return None


def save_checkpoint(out_dir: str | Path, step: int, model, optimizer, info: DistInfo, *, policy_template,
                    extra: dict) -> Path | None:
    """Collective (every rank calls it); rank 0 writes. Returns the checkpoint path on rank 0."""
    weights = full_state_dict(model, info)
    optim = _full_optimizer_state(model, optimizer, info)
    path = None
    error = None
    if info.is_main:
        root = Path(out_dir) / "checkpoints"
        name = f"step_{step:06d}"
        tmp = root / f".{name}.tmp"
        writing = root
        try:
            root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            policy_template.load_state_dict(weights)
            writing = tmp / "policy"
            save_pretrained(policy_template, writing, stats=policy_template.norm_stats,
                            tokenizer=policy_template.tokenizer)
            writing = tmp / "trainer_state.pt"
            torch.save({"step": step, "optimizer": optim, "rng": rng_state(), **extra}, writing)
            writing = tmp / MANIFEST
            write_manifest(tmp)
            writing = root / "latest"
            final = root / name
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            latest_tmp = root / ".latest.tmp"
            latest_tmp.write_text(name)
            _fsync(latest_tmp)
            os.replace(latest_tmp, root / "latest")
            _fsync(root)
            path = final
        except Exception as exc:  # noqa: BLE001 - OSError, safetensors' and torch's write errors alike
            shutil.rmtree(tmp, ignore_errors=True)
            where = getattr(exc, "filename", None) or writing
            reason = getattr(exc, "strerror", None) or " ".join(str(exc).split())
            error = (f"saving checkpoint {name} failed writing {where}: {reason}; the previous checkpoint "
                     f"(checkpoints/latest) is unchanged")
    barrier(info)
    if error is not None:
        raise CheckpointError(error)
    return path


def _step_dirs(root: Path) -> list[Path]:
    return sorted((p for p in root.glob("step_*") if p.is_dir()), key=lambda p: p.name, reverse=True)


def latest_checkpoint(out_dir: str | Path, log=None) -> Path | None:
    """The newest complete checkpoint: the one `latest` names if it verifies, else (saying why
    through `log`, default a warning) the newest step directory that verifies; None if none."""
    root = Path(out_dir) / "checkpoints"
    pointer = root / "latest"
    if not root.is_dir():
        return None
    problem = None
    if pointer.is_file():
        try:
            name = pointer.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            name, problem = "", f"{pointer} is unreadable ({exc})"
        if name and "/" not in name and (root / name).is_dir():
            problem = verify_checkpoint(root / name)
            if problem is None:
                return root / name
        elif problem is None:
            problem = f"{pointer} names {name!r}, which is not a checkpoint directory"
    elif _step_dirs(root):
        problem = f"{pointer} is missing"
    for candidate in _step_dirs(root):
        why = verify_checkpoint(candidate)
        if why is None:
            if problem is not None:
                _say(log, f"[resume] {problem}; resuming from the newest complete checkpoint {candidate}")
            return candidate
        problem = f"{problem}; {why}" if problem else why
    if problem is not None:
        _say(log, f"[resume] no complete checkpoint in {root} ({problem}); starting from scratch")
    return None


def _say(log, message: str) -> None:
    if log is None:
        warnings.warn(message, stacklevel=3)
    else:
        log(message)


def load_policy_weights(path: Path) -> dict[str, torch.Tensor]:
    return load_pretrained(path / "policy", dtype=torch.float32, device="cpu").state_dict()


def load_trainer_state(path: Path) -> dict:
    try:
        return torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure: name the file
        raise CheckpointError(f"{path / 'trainer_state.pt'}: cannot be read ({exc})") from exc


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
