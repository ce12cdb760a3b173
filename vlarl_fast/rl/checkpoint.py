"""Checkpoints as a transaction, sharded: every rank writes its shard of the weights and of the
optimizer (`torch.distributed.checkpoint`); resume reads the shards back onto the same or another
number of ranks; nothing ever gathers the whole model or optimizer on one rank.

    <out_dir>/checkpoints/step_000010/
        policy/                 the official layout without tensors (`save_metadata`: config.json,
                                statistics, processor configs, tokenizer)
        state/                  DCP: .metadata plus one __<rank>_0.distcp per rank, holding
                                {"model": sharded parameters (fp32 master), "optim": sharded AdamW state}
        trainer_state.pt        step, RNG states, config, eval history (small; rank 0)
        manifest.json           size and sha256 of every file above, written last
    <out_dir>/checkpoints/latest   text file naming the newest complete checkpoint

step_000000 is the policy SFT made, written after its evaluation when the run trained one; its
state/ holds the weights only (AdamW has taken no step yet). A run stopped during GRPO's first
iterations resumes there without redoing SFT, and a new run directory given a copy of it (and a
`latest` naming it) runs GRPO with other settings from the same SFT policy.

`vlarl-fast export <checkpoint> <dir>` (`export_pretrained`) writes the official HF layout
(`save_pretrained`) for release; `load_policy` reads a checkpoint's policy directly.

A save writes everything into a temporary sibling directory (fsynced), adds the manifest, renames
the directory into place, and only then replaces `latest` (os.replace, fsynced): a run killed at
any moment leaves the previous checkpoint or the new one, never a partial one. A failed write on any
rank (a full disk) removes the temporary directory and raises an error naming the file on every
rank. On resume, `latest_checkpoint` verifies the checkpoint `latest` names against its manifest; a
dangling or corrupt pointer, or a checkpoint whose files no longer match, falls back to the newest
complete checkpoint that verifies, and says so. The checkpoint directory must be on a file system
every rank sees.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.distributed.checkpoint.api import CheckpointException

from vlarl_fast.policy.checkpoint import (build_from_metadata, file_sha256, read_statistics, save_metadata,
                                          save_pretrained)
from vlarl_fast.rl.distributed import DistInfo, barrier

STATE_DIR = "state"
POLICY_DIR = "policy"


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


MANIFEST = "manifest.json"


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read; the message names the file."""


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
        files[str(path.relative_to(directory))] = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
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
        if file_sha256(path) != meta["sha256"]:
            return f"{path} does not match its sha256 in {manifest_path} (corrupted)"
    for required in ("policy/config.json", "trainer_state.pt", "state/.metadata"):
        if required not in files:
            return f"{directory / required} is not in the manifest"
    return None


def _state_dicts(model, optimizer) -> dict:
    """{"model", "optim"}: this rank's shards (FSDP2 DTensors) or, in one process, the tensors;
    {"model"} alone when `optimizer` is None."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict

    if optimizer is None:
        return {"model": get_model_state_dict(model)}
    model_sd, optim_sd = get_state_dict(model, optimizer)
    return {"model": model_sd, "optim": optim_sd}


def _agree(error: str | None, info: DistInfo) -> str | None:
    """The first rank's error, if any rank has one (every rank then raises the same error)."""
    if not info.enabled:
        return error
    import torch.distributed as dist

    errors: list = [None] * info.world_size
    dist.all_gather_object(errors, error)
    return next((e for e in errors if e is not None), None)


def _root_cause(exc: BaseException) -> BaseException:
    """The underlying error: DCP's CheckpointException carries each rank's as (exception, trace)."""
    failures = getattr(exc, "failures", None)
    if isinstance(failures, dict) and failures:
        first = next(iter(failures.values()))
        exc = first[0] if isinstance(first, tuple) else first
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return exc


def _dcp(fn, state: dict, directory: Path, distributed: bool) -> None:
    """dcp.save / dcp.load, single-process without DCP's notice that it is single-process."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is (disabled, )?unavailable or uninitialized")
        fn(state, checkpoint_id=str(directory), no_dist=not distributed)


def _failure(name: str, where, exc: BaseException) -> str:
    where = getattr(exc, "filename", None) or where
    cause = _root_cause(exc)
    where = getattr(cause, "filename", None) or where
    reason = getattr(cause, "strerror", None) or " ".join(str(cause).split()) or type(cause).__name__
    return (f"saving checkpoint {name} failed writing {where}: {reason}; the previous checkpoint "
            f"(checkpoints/latest) is unchanged")


def save_checkpoint(out_dir: str | Path, step: int, model, optimizer, info: DistInfo, *, policy_template,
                    extra: dict) -> Path | None:
    """Collective (every rank calls it): each rank writes its shard of `model` (the training model,
    sharded or not) and `optimizer`; rank 0 writes `policy_template`'s config, statistics and
    tokenizer (no weights), the trainer state and the manifest. Returns the path on rank 0."""
    import torch.distributed.checkpoint as dcp

    root = Path(out_dir) / "checkpoints"
    name = f"step_{step:06d}"
    # Before the first optimizer step (the checkpoint after SFT) AdamW has no state: only the model
    # is saved. (DCP's get_state_dict would create a state by a zero-lr step, step count 1 and zero
    # moments, and that would shift AdamW's bias correction and the lr warm-up of the run.)
    fresh = not optimizer.state
    tmp = root / f".{name}.tmp"
    error, path, writing = None, None, root
    if info.is_main:
        try:
            root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            writing = tmp / POLICY_DIR
            save_metadata(policy_template, writing, dtype=torch.float32)
        except Exception as exc:  # noqa: BLE001 - OSError, torch's and DCP's write errors alike
            error = _failure(name, writing, exc)
    error = _agree(error, info)
    if error is None:
        writing = tmp / STATE_DIR
        try:
            _dcp(dcp.save, _state_dicts(model, None if fresh else optimizer), writing, info.enabled)
        except (Exception, CheckpointException) as exc:  # noqa: BLE001 - DCP's is a BaseException
            error = _failure(name, writing, exc)
        error = _agree(error, info)
    if error is None and info.is_main:
        try:
            writing = tmp / "trainer_state.pt"
            torch.save({"step": step, "rng": rng_state(), "optimizer_fresh": fresh, **extra}, writing)
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
        except Exception as exc:  # noqa: BLE001
            error = _failure(name, writing, exc)
    error = _agree(error, info)
    if error is not None:
        if info.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        barrier(info)
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


def load_policy(path: Path, *, dtype: torch.dtype = torch.float32, device="cpu"):
    """The policy of a training checkpoint as one unsharded model (one process reads every shard)."""
    import torch.distributed.checkpoint as dcp

    path = Path(path)
    model = build_from_metadata(path / POLICY_DIR, dtype=torch.float32, device="cpu")
    state = {"model": model.state_dict()}
    try:
        _dcp(dcp.load, state, path / STATE_DIR, False)
    except (Exception, CheckpointException) as exc:  # noqa: BLE001 - name the directory
        raise CheckpointError(f"{path / STATE_DIR}: the sharded weights cannot be read "
                              f"({' '.join(str(_root_cause(exc)).split())[:300]})") from exc
    model.load_state_dict(state["model"])
    return model.to(device=device, dtype=dtype).eval()


def load_statistics(path: Path) -> dict:
    """The normalisation statistics the checkpoint's policy was saved with. Some exist in no
    config (SFT computes the proprio statistics from the demos), so a resumed run takes them from
    here, with the weights."""
    return read_statistics(Path(path) / POLICY_DIR)


def load_policy_weights(path: Path) -> dict[str, torch.Tensor]:
    return load_policy(path).state_dict()


def export_pretrained(path: str | Path, directory: str | Path, *, dtype: torch.dtype = torch.bfloat16,
                      max_shard_size: int | str = "5GB") -> Path:
    """Writes a training checkpoint's policy in the official OpenVLA-OFT HF layout (what
    `load_pretrained` and the original `AutoModelForVision2Seq` code read), in `dtype`."""
    path = Path(path)
    problem = verify_checkpoint(path)
    if problem is not None:
        raise CheckpointError(f"export: {problem}")
    model = load_policy(path, dtype=dtype)
    return save_pretrained(model, directory, stats=model.norm_stats, tokenizer=model.tokenizer,
                           max_shard_size=max_shard_size)


def load_trainer_state(path: Path) -> dict:
    try:
        return torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure: name the file
        raise CheckpointError(f"{path / 'trainer_state.pt'}: cannot be read ({exc})") from exc


def restore(path: Path, model, optimizer, info: DistInfo) -> dict:
    """Collective: every rank reads its shards of the weights and optimizer state into the (possibly
    sharded) training model; returns the trainer state."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_state_dict

    state = load_trainer_state(path)
    fresh = bool(state.get("optimizer_fresh"))  # saved before the first optimizer step: weights only
    shards = _state_dicts(model, None if fresh else optimizer)
    try:
        _dcp(dcp.load, shards, path / STATE_DIR, info.enabled)
    except (Exception, CheckpointException) as exc:  # noqa: BLE001
        raise CheckpointError(f"{path / STATE_DIR}: the sharded state cannot be read "
                              f"({' '.join(str(_root_cause(exc)).split())[:300]})") from exc
    if fresh:
        set_model_state_dict(model, shards["model"])
        optimizer.state.clear()  # AdamW starts afresh, as in the run that wrote the checkpoint
    else:
        set_state_dict(model, optimizer, model_state_dict=shards["model"], optim_state_dict=shards["optim"])
    set_rng_state(state["rng"])
    return state
