"""The GRPO/PPO update over stored trajectories: micro-batched forward/backward, clipped loss.

Micro-batches are counted in observations (SimpleVLA-RL's `traj_mini_batch_size=16`: 16 policy
calls per forward/backward), not trajectories, so the activation memory of a forward is bounded
whatever the episode length (`policy/memory_estimate.py` assumes the same). For every mini-batch
(a share of the trajectories, shuffled per epoch) the executed chunks of its trajectories are
listed trajectory by trajectory, chunk by chunk, and split into M nearly equal micro-batches of at
most `micro_batch_observations` observations; M is the maximum over ranks, so every rank runs the
same number of FSDP forwards and backwards (a rank with fewer observations than M runs a
zero-weight forward for each empty micro-batch).

The loss is SimpleVLA-RL's `seq-mean-token-mean` over the global mini-batch: token j of trajectory b
weighs 1 / (valid tokens of b) / (trajectories in the global mini-batch). Each micro-batch passes its
observations as rows `[n_obs, 56]` to `kernels.grpo_loss(agg="seq-mean-token-sum")` with those
weights as the mask, scaled by its share; FSDP averages gradients over ranks, so the sum over all
micro-batches of all ranks is the single-process loss on the union of the data, however the
observations are split. Gradients are clipped to `max_grad_norm`, AdamW steps once per mini-batch.

Old log-probs: `recompute_old_logprobs` evaluates the batch with the training model before the
update (SimpleVLA-RL's order), so the PPO ratio starts at 1 up to the training model's own
batch-composition noise, whatever precision the rollout ran in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from vlarl_fast.kernels import grpo_loss
from vlarl_fast.policy.processor import ModelImages
from vlarl_fast.rl.distributed import DistInfo, all_reduce_max, all_reduce_sum
from vlarl_fast.rl.trajectories import TrajectoryBatch


@dataclass(frozen=True)
class UpdateSettings:
    ppo_epochs: int = 1
    mini_batches: int = 1  # optimizer steps per epoch (the local batch is split evenly)
    micro_batch_observations: int = 16  # observations (policy calls) per forward/backward
    clip_low: float = 0.2  # ratio lower bound 1 - clip_low = 0.8
    clip_high: float = 0.28  # ratio upper bound 1 + clip_high = 1.28
    max_grad_norm: float = 1.0
    temperature: float = 1.6
    lr: float | None = None  # the optimizer's lr after warm-up (None: leave the optimizer's lr alone)
    lr_warmup_steps: int = 0  # optimizer steps of linear lr warm-up (0: constant, SimpleVLA-RL's)


def warmup_lr(optimizer, s: UpdateSettings) -> None:
    """Sets the lr of the optimizer step about to run: `s.lr * (k + 1) / s.lr_warmup_steps` for
    the k-th step (k from 0) while k < lr_warmup_steps, then `s.lr` (veRL's constant schedule
    with warm-up, except that step 0 already moves). k is AdamW's own step count, saved and
    restored with the optimizer, so a resumed run continues the same schedule."""
    if s.lr is None:
        return
    factor = 1.0
    if s.lr_warmup_steps > 0:
        state = optimizer.state.get(optimizer.param_groups[0]["params"][0], {})
        k = int(state.get("step", 0))
        factor = min(1.0, (k + 1) / s.lr_warmup_steps)
    for group in optimizer.param_groups:
        group["lr"] = s.lr * factor


def observation_micro_batches(batch: TrajectoryBatch, traj: np.ndarray, per_micro: int,
                              info: DistInfo) -> list[tuple[np.ndarray, np.ndarray]]:
    """The executed chunks of trajectories `traj` (in that order, chunks in time order) as a list
    of (rows, cols) index arrays, one per micro-batch: M = max over ranks of ceil(n / per_micro)
    nearly equal parts (collective: every rank calls it with its own batch). Parts may be empty
    on a rank with fewer observations than M."""
    if per_micro < 1:
        raise ValueError(f"micro_batch_observations: expected >= 1, got {per_micro}")
    valid = batch.executed[traj] > 0  # [len(traj), T]
    local_rows, cols = np.nonzero(valid)  # row-major: trajectory by trajectory, chunk by chunk
    rows = np.asarray(traj)[local_rows]
    n = rows.size
    m = all_reduce_max(max(-(-n // per_micro), 1), info)
    bounds = np.linspace(0, n, m + 1).round().astype(np.int64)
    return [(rows[a:b], cols[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def _model_inputs(batch: TrajectoryBatch, rows: np.ndarray, cols: np.ndarray, instructions: list[str]):
    images = ModelImages(torch.from_numpy(batch.images[rows, cols]))  # the rollout's model input, bit for bit
    prompts = [instructions[i] for i in batch.task_ids[rows]]
    tokens = torch.from_numpy(batch.tokens[rows, cols].astype(np.int64))
    proprio = None if batch.proprio is None else torch.from_numpy(batch.proprio[rows, cols])
    return images, prompts, tokens, proprio


def _placeholder(batch: TrajectoryBatch) -> tuple[np.ndarray, np.ndarray]:
    """One observation that exists (for a zero-weight forward on an empty micro-batch)."""
    r, c = np.nonzero(batch.executed > 0)
    if r.size == 0:
        return np.zeros(1, np.int64), np.zeros(1, np.int64)
    return r[:1], c[:1]


@torch.no_grad()
def recompute_old_logprobs(model, batch: TrajectoryBatch, instructions: list[str], s: UpdateSettings,
                           info: DistInfo, unnorm_key: str | None = None) -> np.ndarray:
    """float32 [B, T, 56]: the log-probs of the batch's tokens under `model` (the training model),
    micro-batched like the update; chunks that never ran stay 0. Collective under FSDP."""
    out = np.zeros_like(batch.logp)
    was_training = model.training
    model.eval()
    try:
        for rows, cols in observation_micro_batches(batch, np.arange(len(batch)), s.micro_batch_observations, info):
            empty = rows.size == 0
            r, c = _placeholder(batch) if empty else (rows, cols)
            images, prompts, tokens, proprio = _model_inputs(batch, r, c, instructions)
            logp = model(images, prompts, tokens, proprio, temperature=s.temperature, unnorm_key=unnorm_key)
            if not empty:
                out[rows, cols] = logp.float().cpu().numpy()
    finally:
        model.train(was_training)
    return out


def micro_batch_loss(model, batch: TrajectoryBatch, rows: np.ndarray, cols: np.ndarray, weights: np.ndarray,
                     adv: torch.Tensor, instructions: list[str], s: UpdateSettings, unnorm_key: str | None = None):
    """(loss, stats, entropy_sum, token_count, weight_sum) for the observations (rows, cols):
    loss = sum over their tokens of weight * clipped surrogate / n_obs (`seq-mean-token-sum` over
    rows of one observation each), `weights` [B, T, 56] the per-token loss weights (0 = masked)."""
    images, prompts, tokens, proprio = _model_inputs(batch, rows, cols, instructions)
    logp, entropy = model(images, prompts, tokens, proprio, temperature=s.temperature, return_entropy=True,
                          unnorm_key=unnorm_key)
    device = logp.device
    r, c = torch.from_numpy(rows), torch.from_numpy(cols)
    old = torch.from_numpy(batch.logp[rows, cols]).to(device)
    w = torch.from_numpy(weights[rows, cols]).to(device)
    loss, stats = grpo_loss(logp, old, adv[r].to(device), w, clip_low=s.clip_low, clip_high=s.clip_high,
                            agg="seq-mean-token-sum")
    counted = (w > 0).to(entropy.dtype)
    ent_sum = (entropy.detach().float() * counted).sum()
    return loss, stats, ent_sum, counted.sum(), w.sum()


def ppo_update(model, optimizer, batch: TrajectoryBatch, adv: torch.Tensor, instructions: list[str],
               s: UpdateSettings, info: DistInfo, generator: torch.Generator,
               unnorm_key: str | None = None) -> dict[str, float]:
    """Runs the configured epochs and mini-batches; returns metrics already reduced over ranks.

    Every rank must hold the same number of trajectories (the trainer guarantees it)."""
    n = len(batch)
    if n == 0:
        raise ValueError("ppo_update: the batch is empty")
    if n % s.mini_batches:
        raise ValueError(f"update.mini_batches: {s.mini_batches} must divide the local batch ({n} trajectories)")
    mb_size = n // s.mini_batches
    global_mb = mb_size * info.world_size
    mask = batch.token_mask()
    counts = mask.reshape(n, -1).sum(axis=1)
    # token weight of the seq-mean-token-mean loss, up to the mini-batch's 1 / trajectories
    weights = (mask / np.maximum(counts, 1)[:, None, None]).astype(np.float32)
    # loss, clipfrac*w, ppo_kl*w, w, entropy, tokens, time
    sums = torch.zeros(6, dtype=torch.float64)
    grad_norms: list[float] = []
    t0 = time.perf_counter()
    model.train()
    for _ in range(s.ppo_epochs):
        order = torch.randperm(n, generator=generator).numpy()
        for m in range(s.mini_batches):
            idx = order[m * mb_size:(m + 1) * mb_size]
            optimizer.zero_grad(set_to_none=True)
            for rows, cols in observation_micro_batches(batch, idx, s.micro_batch_observations, info):
                empty = rows.size == 0
                r, c = _placeholder(batch) if empty else (rows, cols)
                loss, stats, ent_sum, count, wsum = micro_batch_loss(model, batch, r, c, weights, adv,
                                                                     instructions, s, unnorm_key)
                share = 0.0 if empty else len(r) * info.world_size / global_mb
                (loss * share).backward()
                if not empty:
                    sums[0] += float(loss.detach()) * len(r) / mb_size
                    sums[1] += float(stats["clipfrac"]) * float(wsum)
                    sums[2] += float(stats["ppo_kl"]) * float(wsum)
                    sums[3] += float(wsum)
                    sums[4] += float(ent_sum)
                    sums[5] += float(count)
            grad_norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                                       s.max_grad_norm)
            if hasattr(grad_norm, "full_tensor"):
                grad_norm = grad_norm.full_tensor()
            warmup_lr(optimizer, s)
            optimizer.step()
            grad_norms.append(float(grad_norm))
    elapsed = time.perf_counter() - t0
    steps = float(len(grad_norms))
    reduced = all_reduce_sum(torch.cat([sums, torch.tensor([elapsed])]), info)
    w = info.world_size
    return {
        "actor/pg_loss": float(reduced[0]) / w / steps,
        "actor/clipfrac": float(reduced[1] / max(float(reduced[3]), 1e-30)),
        "actor/ppo_kl": float(reduced[2] / max(float(reduced[3]), 1e-30)),
        "actor/entropy": float(reduced[4] / max(float(reduced[5]), 1.0)),
        "actor/grad_norm": sum(grad_norms) / steps,
        "perf/update_tokens": float(reduced[5]),
        "perf/update_tokens_per_s": float(reduced[5]) / max(float(reduced[6]) / w, 1e-9),
        "time/update_s": elapsed,
    }
