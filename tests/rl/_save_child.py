"""Child process of test_checkpoint_faults: saves checkpoints of a tiny policy in a loop (step 1
first, then 2, 3, ... until killed), optionally under a file-size limit (a full disk).

Modes: `full-disk OUT` saves step 1, then step 2 under a 64 KiB file-size limit; `fork-server -`
imports torch and builds the policy once, then for each run directory read from stdin forks a
child that saves there in a loop (it prints `ready PID` after its first save), waits for it to die
(the test kills it) and prints `dead`: one interpreter start for many kills."""

import os
import resource
import signal
import sys
import traceback

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


def loop():
    save(1)
    print("ready", os.getpid(), flush=True)
    step = 2
    while True:
        with torch.no_grad():
            for p in policy.parameters():
                p.add_(1e-3)
        save(step)
        step += 1


if mode == "fork-server":
    print("serving", flush=True)
    while line := sys.stdin.readline():
        out_dir = line.strip()
        pid = os.fork()
        if pid == 0:
            try:
                loop()
            except BaseException:
                traceback.print_exc()
            os._exit(1)  # never back into the server's loop
        os.waitpid(pid, 0)
        print("dead", flush=True)
    sys.exit(0)

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
