"""The GRPO/PPO update over stored trajectories: micro-batched forward/backward, clipped loss.

For every mini-batch (a share of the trajectories, shuffled per epoch): each micro-batch gathers
the executed chunks of its trajectories, runs one batched `action_logprob` forward (the fused
action-bin log-prob), scatters the log-probs back to [b, T * 56] and takes
`kernels.grpo_loss(agg="seq-mean-token-mean")`: per-trajectory token mean, then the mean over
trajectories. Micro-batch losses are weighted by their share of the global mini-batch (summed over
ranks; FSDP averages gradients over ranks), gradients are clipped to `max_grad_norm` and AdamW
steps once per mini-batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from vlarl_fast.kernels import grpo_loss
from vlarl_fast.policy.processor import ModelImages
from vlarl_fast.rl.distributed import DistInfo, all_reduce_sum
from vlarl_fast.rl.trajectories import TrajectoryBatch


@dataclass(frozen=True)
class UpdateSettings:
    ppo_epochs: int = 1
    mini_batches: int = 1  # optimizer steps per epoch (the local batch is split evenly)
    micro_batch_size: int = 8  # trajectories per forward/backward
    clip_low: float = 0.2  # ratio lower bound 1 - clip_low = 0.8
    clip_high: float = 0.28  # ratio upper bound 1 + clip_high = 1.28
    max_grad_norm: float = 1.0
    temperature: float = 1.6


def micro_batch_loss(model, batch: TrajectoryBatch, adv: torch.Tensor, instructions: list[str],
                     s: UpdateSettings, unnorm_key: str | None = None):
    """(loss, stats, entropy_sum, token_count) for one micro-batch of trajectories."""
    b, t, n_tok = batch.tokens.shape
    valid = batch.executed > 0  # [b, T] chunks that ran
    rows, cols = np.nonzero(valid)
    images = ModelImages(torch.from_numpy(batch.images[rows, cols]))  # the rollout's model input, bit for bit
    prompts = [instructions[i] for i in batch.task_ids[rows]]
    tokens = torch.from_numpy(batch.tokens[rows, cols].astype(np.int64))
    proprio = None if batch.proprio is None else torch.from_numpy(batch.proprio[rows, cols])
    logp_chunks, entropy = model(images, prompts, tokens, proprio, temperature=s.temperature, return_entropy=True,
                                 unnorm_key=unnorm_key)
    logp = torch.zeros(b, t, n_tok, dtype=logp_chunks.dtype, device=logp_chunks.device)
    logp = logp.index_put((torch.from_numpy(rows), torch.from_numpy(cols)), logp_chunks)
    device = logp.device
    old = torch.from_numpy(batch.logp).to(device)
    mask = torch.from_numpy(batch.token_mask()).to(device)
    loss, stats = grpo_loss(logp.reshape(b, -1), old.reshape(b, -1), adv.to(device), mask.reshape(b, -1),
                            clip_low=s.clip_low, clip_high=s.clip_high, agg="seq-mean-token-mean")
    chunk_mask = mask[torch.from_numpy(rows), torch.from_numpy(cols)]
    ent_sum = (entropy.detach().float() * chunk_mask).sum()
    return loss, stats, ent_sum, chunk_mask.sum()


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
    sums = torch.zeros(7, dtype=torch.float64)  # loss, clipfrac, ppo_kl, entropy, tokens, grad_norm, steps
    t0 = time.perf_counter()
    model.train()
    for _ in range(s.ppo_epochs):
        order = torch.randperm(n, generator=generator).numpy()
        for m in range(s.mini_batches):
            idx = order[m * mb_size:(m + 1) * mb_size]
            optimizer.zero_grad(set_to_none=True)
            for start in range(0, mb_size, s.micro_batch_size):
                sel = idx[start:start + s.micro_batch_size]
                micro = batch.select(sel)
                loss, stats, ent_sum, count = micro_batch_loss(model, micro, adv[sel], instructions, s, unnorm_key)
                weight = len(sel) * info.world_size / global_mb
                (loss * weight).backward()
                frac = len(sel) / mb_size
                sums[0] += float(loss.detach()) * frac
                sums[1] += float(stats["clipfrac"]) * frac
                sums[2] += float(stats["ppo_kl"]) * frac
                sums[3] += float(ent_sum)
                sums[4] += float(count)
            grad_norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                                       s.max_grad_norm)
            if hasattr(grad_norm, "full_tensor"):
                grad_norm = grad_norm.full_tensor()
            optimizer.step()
            sums[5] += float(grad_norm)
            sums[6] += 1
    elapsed = time.perf_counter() - t0
    steps = float(sums[6])
    reduced = all_reduce_sum(torch.cat([sums[:5], torch.tensor([elapsed])]), info)
    w = info.world_size
    return {
        "actor/pg_loss": float(reduced[0]) / w / steps,
        "actor/clipfrac": float(reduced[1]) / w / steps,
        "actor/ppo_kl": float(reduced[2]) / w / steps,
        "actor/entropy": float(reduced[3] / max(float(reduced[4]), 1.0)),
        "actor/grad_norm": float(sums[5]) / steps,
        "perf/update_tokens": float(reduced[4]),
        "perf/update_tokens_per_s": float(reduced[4]) / max(float(reduced[5]) / w, 1e-9),
        "time/update_s": elapsed,
    }
