"""Policy benchmark: one rollout forward and one training forward+backward of the tiny preset on this
machine, batched preprocessing at the real 224-px pipeline, and the 7B memory estimate.

    python benchmarks/bench_policy.py [--smoke] [--batch N]

`run(smoke)` returns the table (the `vlarl-fast bench policy` CLI calls it). On a CUDA machine the
7B rollout forward and one training micro-batch are also measured (`--gpu-7b`), reporting peak memory.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from vlarl_fast.policy import OpenVLAOFT, OpenVLAOFTConfig, PromptTokenizer  # noqa: E402
from vlarl_fast.policy.memory_estimate import estimate_memory  # noqa: E402

INSTRUCTION = "put both the alphabet soup and the tomato sauce in the basket"
STATS = {"libero_10_no_noops": {"action": {"q01": [-1.0] * 7, "q99": [1.0] * 7, "mask": [True] * 6 + [False]}}}


def _median_seconds(fn, reps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _tiny_rows(batch: int, reps: int) -> list[tuple[str, float, str]]:
    torch.manual_seed(0)
    cfg = OpenVLAOFTConfig.tiny(image_size=16)
    model = OpenVLAOFT(cfg, tokenizer=PromptTokenizer.tiny(), norm_stats=STATS)
    frames = np.random.default_rng(0).integers(0, 256, (batch, 1, 64, 64, 3), dtype=np.uint8)
    instructions = [INSTRUCTION] * batch
    gen = torch.Generator().manual_seed(0)

    model.eval()
    rollout = _median_seconds(lambda: model.sample_actions(frames, instructions, generator=gen), reps)
    tokens = model.sample_actions(frames, instructions, generator=gen).tokens

    model.train()

    def train_step():
        model.zero_grad(set_to_none=True)
        logp, ent = model.action_logprob(frames, instructions, tokens, return_entropy=True)
        (-(logp.mean()) - 0.001 * ent.mean()).backward()

    train = _median_seconds(train_step, reps)
    params = sum(p.numel() for p in model.parameters())
    return [
        (f"tiny preset parameters", params / 1e6, "million"),
        (f"tiny rollout forward (sample_actions), B={batch}", rollout * 1e3, "ms"),
        (f"tiny training forward+backward (logp+entropy), B={batch}", train * 1e3, "ms"),
    ]


def _preprocess_row(batch: int, reps: int) -> tuple[str, float, str]:
    cfg = OpenVLAOFTConfig.openvla_7b()
    from vlarl_fast.policy.processor import OpenVLAProcessor

    proc = OpenVLAProcessor(cfg, None)
    frames = np.random.default_rng(0).integers(0, 256, (batch, 1, 256, 256, 3), dtype=np.uint8)
    seconds = _median_seconds(lambda: proc.pixel_values(frames, "cpu"), reps)
    return (f"preprocess B={batch} 256px -> 224px fused pixels (7B pipeline)", seconds * 1e3, "ms")


def random_weight_model(cfg: OpenVLAOFTConfig, dev: torch.device, dtype: torch.dtype, *, tokenizer=None,
                        norm_stats=None) -> OpenVLAOFT:
    """Built on the meta device and materialised on `dev` (time and memory do not depend on values)."""
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    with torch.device("meta"):
        model = OpenVLAOFT(cfg, tokenizer=tokenizer, norm_stats=STATS if norm_stats is None else norm_stats)
    model = model.to_empty(device=dev).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    model.language_model.model.rotary_emb = LlamaRotaryEmbedding(config=model.language_model.model.config).to(dev)
    return model


def _measured_rows(cfg: OpenVLAOFTConfig, batch: int, dev: torch.device, label: str, reps: int = 5) -> list[tuple[str, float, str]]:
    """Rollout forward and one training forward+backward (bf16 weights and grads, no optimizer)."""
    from vlarl_fast.policy.processor import PromptBatch

    model = random_weight_model(cfg, dev, torch.bfloat16)
    prompt = PromptBatch(torch.full((batch, 32), 100, device=dev), torch.ones(batch, 32, dtype=torch.bool, device=dev))
    frames = torch.randint(0, 256, (batch, cfg.num_images, 256, 256, 3), dtype=torch.uint8, device=dev)
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    model.eval()
    rollout = _median_seconds(lambda: model.sample_actions(frames, prompt), reps)
    rollout_peak = torch.cuda.max_memory_allocated() / 1e9 if cuda else float("nan")
    tokens = model.sample_actions(frames, prompt).tokens
    model.train()
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    def step():
        model.zero_grad(set_to_none=True)
        model(frames, prompt, tokens).mean().backward()

    train = _median_seconds(step, max(reps // 2, 1))
    train_peak = torch.cuda.max_memory_allocated() / 1e9 if cuda else float("nan")
    return [
        (f"{label} bf16 rollout forward B={batch}", rollout * 1e3, "ms"),
        (f"{label} bf16 rollout peak memory B={batch}", rollout_peak, "GB"),
        (f"{label} bf16 train fwd+bwd B={batch} (bf16 grads, no optimizer)", train * 1e3, "ms"),
        (f"{label} bf16 train peak memory B={batch}", train_peak, "GB"),
    ]


def _format(rows: list[tuple[str, float, str]], title: str) -> str:
    width = max(len(r[0]) for r in rows)
    lines = [f"{title.ljust(width)}  {'median':>9}  unit", "-" * (width + 17)]
    lines += [f"{name.ljust(width)}  {value:9.2f}  {unit}" for name, value, unit in rows]
    return "\n".join(lines)


def run(smoke: bool = False, batch: int | None = None, gpu_7b: bool = False) -> str:
    batch = batch or (2 if smoke else 8)
    reps = 3 if smoke else 20
    rows = _tiny_rows(batch, reps) + [_preprocess_row(batch, reps)]
    from cpu_paths import cpu_line, kernel_paths_line

    dtype = OpenVLAOFT(OpenVLAOFTConfig.tiny(image_size=16), tokenizer=PromptTokenizer.tiny(), norm_stats=STATS).dtype
    out = [f"machine: {torch.get_num_threads()} torch threads, torch {torch.__version__}\n{cpu_line()}\n"
           f"paths: tiny preset, {kernel_paths_line(dtype)}",
           _format(rows, "policy benchmark (CPU)")]
    if gpu_7b and torch.cuda.is_available():
        rows = _measured_rows(OpenVLAOFTConfig.openvla_7b(), batch, torch.device("cuda"), f"7B on {torch.cuda.get_device_name()}")
        out.append(_format(rows, "policy benchmark (GPU, measured)"))
    out.append(estimate_memory().table())
    out.append(estimate_memory(checkpointing=True).table())
    return "\n\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="few repetitions, batch 2")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--gpu-7b", action="store_true", help="also measure the 7B model on a CUDA device")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(run(args.smoke, args.batch, args.gpu_7b))


if __name__ == "__main__":
    main()
