"""Child process of test_checkpoint_faults: saves checkpoints of a tiny policy in a loop (step 1
first, then 2, 3, ... until killed), optionally under a file-size limit (a full disk)."""

import resource
import signal
import sys

import torch

from vlarl_fast.rl import checkpoint
from vlarl_fast.rl.distributed import DistInfo
from vlarl_fast.rl.policy_setup import build_policy

out_dir, mode = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)
policy = build_policy(16, 0)
opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
policy.action_logprob(torch.zeros(1, 1, 16, 16, 3, dtype=torch.uint8), ["reach the red cube"],
                      torch.zeros(1, 56, dtype=torch.long)).sum().backward()
opt.step()  # a non-empty optimizer state


def save(step):
    checkpoint.save_checkpoint(out_dir, step, policy, opt, DistInfo(), policy_template=policy,
                               extra={"history": [], "config": {}})


save(1)
if mode == "full-disk":
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
    try:
        save(2)
    except checkpoint.CheckpointError as exc:
        print("ERROR", exc, flush=True)
        sys.exit(3)
    sys.exit(0)
print("ready", flush=True)
step = 2
while True:
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(1e-3)
    save(step)
    step += 1
