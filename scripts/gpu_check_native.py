"""The native-stack steps of scripts/gpu_check.sh (the engine built with CUDA, EGL on the card,
FSDP2 on NCCL, LIBERO on the GPU machine), printed row by row so a timeout keeps what was done.

    python3 -P scripts/gpu_check_native.py egl     # EGL devices, the rank's choice, a frame's GL renderer
    python3 -P scripts/gpu_check_native.py fsdp    # FSDP2 on NCCL, one rank: an update vs the plain model
    python3 -P scripts/gpu_check_native.py grpo [--envs 16] [--chunks 8] [--smoke]
        one GRPO iteration on LIBERO (libero_spatial task 0): rollout on the GPU with a policy of
        OpenVLA-OFT's real widths (DINOv2-L + SigLIP-so400m at 224 px, projector, Llama hidden 4096)
        and 2 Llama layers, random bf16 weights made here; GRPO advantages; one PPO update

Needs the native core (built by gpu_check.sh's build step) and, for grpo, LIBERO (the bundle).
Exit status 0: fine; 3: no CUDA device (nothing measured); 1: something failed.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import sys
import time
import traceback

import numpy as np


def _p(*args) -> None:
    print(*args, flush=True)


def _fail(what: str, exc: BaseException) -> int:
    _p(f"FAILED {what}: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}")
    traceback.print_exc(limit=8, file=sys.stdout)
    return 1


def egl() -> int:
    import mujoco

    from vlarl_fast.engine import Engine
    from vlarl_fast.engine.egl_devices import apply_rank_egl_device, egl_devices

    devices = egl_devices()
    for d in devices:
        _p(f"EGL device {d.index}: CUDA {d.cuda_device}, drm {d.drm_file or '-'}, {d.extensions}")
    choice = apply_rank_egl_device(0, log=_p)
    _p(f"rank with CUDA device 0 renders on: {choice.reason}")
    xml = """<mujoco><worldbody><light pos="0 0 3"/><camera name="c" pos="0 -1 0.5" xyaxes="1 0 0 0 0.5 1"/>
             <geom type="plane" size="1 1 0.1"/><body pos="0 0 0.2"><freejoint/><geom type="box" size=".1 .1 .1" rgba="1 0 0 1"/></body>
             </worldbody></mujoco>"""
    engine = Engine(mujoco.MjModel.from_xml_string(xml), num_envs=4, num_threads=2, cameras=["c"],
                    height=256, width=256, geom_groups=(0, 1, 2))
    engine.step(np.zeros((4, 0)), nstep=1)  # positions computed
    frames = engine.render()
    renderer = engine.gl_renderer
    _p(f"native render: frames {frames.shape}, mean {frames.mean():.1f}, GL renderer {renderer}")
    engine.close()
    nvidia = any(d.cuda_device >= 0 for d in devices)
    if nvidia and "nvidia" not in (renderer or "").lower():
        _p("FAILED egl: an NVIDIA EGL device exists but the engine rendered on " + str(renderer))
        return 1
    if frames.mean() <= 0:
        _p("FAILED egl: black frames")
        return 1
    _p(f"egl: {'on the card' if nvidia else 'no NVIDIA EGL device (software rendering)'}")
    return 0


def fsdp() -> int:
    import torch

    if not torch.cuda.is_available():
        _p("skipped: no CUDA")
        return 3
    from tests.rl._helpers import INSTRUCTIONS, sampled_batch  # noqa: E402 (gpu_sitecustomize)
    from vlarl_fast.rl import grpo
    from vlarl_fast.rl.distributed import DistInfo, init, parallelize, shutdown, uses_collectives
    from vlarl_fast.rl.policy_setup import build_policy
    from vlarl_fast.rl.update import UpdateSettings, ppo_update

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("GPU_CHECK_PORT", "29531"),
                      RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    info = init("nccl")
    try:
        base = build_policy(16, 0)
        batch = sampled_batch(base, seed=1)
        adv = grpo.advantages(batch)
        settings = UpdateSettings(micro_batch_observations=8)
        plain = copy.deepcopy(base).cuda()
        sharded = parallelize(copy.deepcopy(base).cuda(), info)
        assert uses_collectives(sharded)
        before = {k: v.detach().float().cpu().clone() for k, v in base.state_dict().items()}
        out = {}
        for name, model, dinfo in (("plain fp32", plain, DistInfo()), ("FSDP2 NCCL bf16", sharded, info)):
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
            t0 = time.perf_counter()
            metrics = ppo_update(model, opt, batch, adv, INSTRUCTIONS, settings, dinfo, torch.Generator().manual_seed(0))
            torch.cuda.synchronize()
            _p(f"{name}: update {time.perf_counter() - t0:.2f} s, loss {metrics['actor/pg_loss']:.5f}, grad norm {metrics['actor/grad_norm']:.4g}")
            out[name] = model
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        got = get_model_state_dict(sharded, options=StateDictOptions(full_state_dict=True))
        ref = plain.state_dict()
        num = den = 0.0
        for k, v in ref.items():
            d_ref = v.float().cpu() - before[k]
            d_got = got[k].float().cpu() - before[k]
            num += float((d_got - d_ref).norm() ** 2)
            den += float(d_ref.norm() ** 2)
        rel = (num / max(den, 1e-30)) ** 0.5
        _p(f"fsdp: |update(FSDP2 NCCL, bf16 compute) - update(plain fp32)| / |update| = {rel:.3e} over {len(ref)} tensors")
        if not den or rel > 0.1:
            _p("FAILED fsdp: the sharded update differs from the plain one (or nothing moved)")
            return 1
        return 0
    finally:
        shutdown()


def grpo_libero(envs: int, chunks: int, smoke: bool = False) -> int:
    """`smoke`: the same code on the CPU with the tiny preset (a check of this script, no figures)."""
    import torch

    if not smoke and not torch.cuda.is_available():
        _p("skipped: no CUDA")
        return 3
    from vlarl_fast.envs.chunk_env import repeat_rows
    from vlarl_fast.envs.suites import make_suite, make_suite_env
    from vlarl_fast.policy import OpenVLAOFT, OpenVLAOFTConfig, PromptTokenizer
    from vlarl_fast.rl import grpo
    from vlarl_fast.rl.distributed import DistInfo
    from vlarl_fast.rl.rollout import rollout
    from vlarl_fast.rl.update import UpdateSettings, ppo_update

    dev = torch.device("cpu" if smoke else "cuda")
    cuda = dev.type == "cuda"
    group = 8
    t0 = time.perf_counter()
    suite = make_suite("libero_spatial", [0])
    threads = min(envs, os.cpu_count() or 1)
    env = make_suite_env(suite, envs, max_steps=chunks * 8, image_size=256, num_threads=threads,
                         cameras=["agentview"])
    t_env = time.perf_counter() - t0
    if smoke:
        cfg = OpenVLAOFTConfig.tiny(image_size=16)
    else:
        cfg = OpenVLAOFTConfig.openvla_7b()
        cfg = cfg.replace(text=dataclasses.replace(cfg.text, num_hidden_layers=2))
    stats = {"libero_spatial_no_noops": {"action": {"q01": [-1.0] * 7, "q99": [1.0] * 7, "mask": [True] * 6 + [False]}}}
    t0 = time.perf_counter()
    torch.manual_seed(0)
    with torch.device("meta"):
        policy = OpenVLAOFT(cfg, tokenizer=PromptTokenizer.tiny(), norm_stats=stats)
    policy = policy.to_empty(device=dev).to(torch.float32 if smoke else torch.bfloat16)
    with torch.no_grad():
        for p in policy.parameters():
            p.normal_(0, 0.02)
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    policy.language_model.model.rotary_emb = LlamaRotaryEmbedding(config=policy.language_model.model.config).to(dev)
    params = sum(p.numel() for p in policy.parameters())
    t_model = time.perf_counter() - t0
    _p(f"policy: hidden {cfg.text.hidden_size}, {cfg.text.num_hidden_layers} Llama layers, vision "
       f"{cfg.vision[0].embed_dim}+{cfg.vision[1].embed_dim} at {cfg.image_size} px, {params / 1e9:.3f} B parameters, {policy.dtype} on "
       f"{torch.cuda.get_device_name() if cuda else 'CPU'} (made in {t_model:.1f} s); env: {envs} LIBERO slots, {threads} threads (made in {t_env:.1f} s)")
    rng = np.random.default_rng(0)
    task_idx, init_ids = suite.sample_groups(rng, envs // group, [])
    states = repeat_rows(suite.init_states(task_idx, init_ids), group)
    tasks = [suite.tasks[i] for i in np.repeat(task_idx, group)]
    key = suite.unnorm_key(policy.norm_stats)
    policy.eval()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    peak = (lambda: torch.cuda.max_memory_allocated() / 1e9) if cuda else (lambda: float("nan"))
    reset = torch.cuda.reset_peak_memory_stats if cuda else (lambda: None)
    reset()
    t0 = time.perf_counter()
    batch, times = rollout(policy, env, tasks, states, task_ids=np.repeat(task_idx, group),
                           group_ids=np.repeat(np.arange(envs // group), group), max_chunks=chunks,
                           temperature=1.6, generator=torch.Generator(device=dev).manual_seed(0), unnorm_key=key)
    sync()
    t_roll = time.perf_counter() - t0
    roll_peak = peak()
    adv = grpo.advantages(batch)
    policy.train()
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-6)
    reset()
    t0 = time.perf_counter()
    metrics = ppo_update(policy, opt, batch, adv, [t.instruction for t in suite.tasks],
                         UpdateSettings(micro_batch_observations=16), DistInfo(), torch.Generator().manual_seed(0), unnorm_key=key)
    sync()
    t_upd = time.perf_counter() - t0
    upd_peak = peak()
    env.close()
    obs = int((batch.executed > 0).sum())
    rows = [
        ("trajectories x chunks (8 steps each)", f"{envs} x {chunks}"),
        ("observations (policy inputs)", f"{obs}"),
        ("rollout wall", f"{t_roll:.2f} s"),
        (f"  policy (sample_actions, {dev.type})", f"{times.policy_s:.2f} s over {times.policy_calls} calls"),
        ("  engine (step_chunk, CPU + EGL)", f"{times.env_s:.2f} s, {times.env_steps / max(times.env_s, 1e-9):.0f} env steps/s"),
        ("rollout peak GPU memory", f"{roll_peak:.1f} GB"),
        ("update wall (1 epoch, micro-batch 2 traj.)", f"{t_upd:.2f} s, {obs / t_upd:.1f} obs/s"),
        ("update peak GPU memory", f"{upd_peak:.1f} GB"),
        ("success rate (random weights)", f"{float(batch.success.mean()):.2f}"),
        ("pg loss, grad norm, entropy", f"{metrics['actor/pg_loss']:.4g}, {metrics['actor/grad_norm']:.4g}, {metrics['actor/entropy']:.4g}"),
    ]
    _p("\n==== grpo_libero table")
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        _p(f"{name.ljust(width)}  {value}")
    _p(f"grpo_libero: one iteration in {t_roll + t_upd:.1f} s")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("egl", "fsdp", "grpo"))
    ap.add_argument("--envs", type=int, default=16)
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--smoke", action="store_true", help="grpo: tiny preset on the CPU (checks the script)")
    args = ap.parse_args()
    try:
        if args.what == "egl":
            return egl()
        if args.what == "fsdp":
            return fsdp()
        return grpo_libero(args.envs, args.chunks, args.smoke)
    except Exception as exc:  # noqa: BLE001
        return _fail(args.what, exc)


if __name__ == "__main__":
    sys.exit(main())
