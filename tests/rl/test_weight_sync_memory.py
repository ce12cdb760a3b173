"""The rollout replica's weight sync, 2 gloo ranks: peak host memory per rank during the sync is
measured (VmHWM after resetting it) and stays below one full copy of the model; the replica then
holds exactly the training weights. The former sync (a full state dict gathered, then loaded) is
measured the same way as the control: it costs about one full copy."""

from __future__ import annotations

import dataclasses
import os
import socket

import torch
import torch.multiprocessing as mp

from vlarl_fast.policy import OpenVLAOFT, PromptTokenizer
from vlarl_fast.policy.checkpoint import empty_like
from vlarl_fast.rl.distributed import DistInfo, full_state_dict, parallelize, sync_rollout_policy
from vlarl_fast.rl.policy_setup import BUILTIN_STATS, builtin_policy_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status_kib(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _peak_delta_bytes(fn) -> int:
    """Peak resident memory above the level before `fn` (resets the high-water mark first)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    before = _status_kib("VmRSS")
    fn()
    return (_status_kib("VmHWM") - before) * 1024


def _model(seed: int) -> OpenVLAOFT:
    cfg = builtin_policy_config(16)
    # ~27M parameters (~110 MB fp32): large enough that allocator noise is small beside one copy
    text = dataclasses.replace(cfg.text, hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                               num_attention_heads=8, num_key_value_heads=8)
    torch.manual_seed(seed)
    return OpenVLAOFT(dataclasses.replace(cfg, text=text), tokenizer=PromptTokenizer.tiny(), norm_stats=BUILTIN_STATS)


def _worker(rank: int, world: int, port: int, out_path: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    info = DistInfo(rank=rank, world_size=world, backend="gloo")
    model = _model(0)
    full_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    reference = {k: v.clone() for k, v in model.state_dict().items()} if rank == 0 else None
    replica = empty_like(model, dtype=torch.float32, device="cpu")
    train = parallelize(model, info, param_dtype=torch.float32)
    sync_rollout_policy(train, replica, info)  # first sync touches the replica's pages
    new = _peak_delta_bytes(lambda: sync_rollout_policy(train, replica, info))
    old = _peak_delta_bytes(lambda: replica.load_state_dict(full_state_dict(train, info)))
    exact = None
    if rank == 0:
        exact = all(torch.equal(replica.state_dict()[k], v) for k, v in reference.items())
    torch.save({"full": full_bytes, "new": new, "old": old, "exact": exact}, f"{out_path}.{rank}")
    dist.barrier()
    dist.destroy_process_group()


def test_weight_sync_peak_host_memory_below_one_model_copy(tmp_path):
    out = str(tmp_path / "mem")
    mp.start_processes(_worker, args=(2, _free_port(), out), nprocs=2, join=True, start_method="spawn")
    for rank in range(2):
        r = torch.load(f"{out}.{rank}", weights_only=False)
        mb = lambda b: f"{b / 2**20:.1f} MiB"  # noqa: E731
        print(f"rank {rank}: model {mb(r['full'])}; sync peak +{mb(r['new'])} (tensor by tensor), "
              f"+{mb(r['old'])} (full state dict, the control)")
        assert r["old"] > 0.75 * r["full"], "the control should cost about one full copy: the measurement is off"
        assert r["new"] < 0.25 * r["full"], r
        if rank == 0:
            assert r["exact"], "the replica does not hold the training weights"
