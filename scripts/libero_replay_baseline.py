"""What a policy that only memorised its one demo reaches: the scripted expert's demo from one init
state, replayed open loop (its actions, no feedback) on other init states of the same task.

    python scripts/libero_replay_baseline.py [--suite libero_goal] [--tasks 1 2 4 6 8 9]
        [--demo-id 0] [--init-ids 30 .. 49] [--max-steps 224]

The demo is recorded as `libero_learn` records its SFT demo (native engine, LIBERO's settle steps);
the replay holds the demo's last action until `--max-steps` control steps (the recipe's episode:
28 chunks x 8), as a policy that repeats the end of its demo would. Success is LIBERO's own
`_check_success` after every control step. Prints per task and overall successes.
Needs LIBERO's assets ($VLARL_LIBERO_ASSETS, docs/libero.md).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def replay_success(scene, demo_actions: np.ndarray, init_ids: np.ndarray, max_steps: int) -> np.ndarray:
    """Success per init state of `demo_actions` [T, 7] replayed open loop, the last one held."""
    from vlarl_fast.envs.libero.task_engine import LiberoTaskEngine

    pad = max(0, max_steps - len(demo_actions))
    actions = np.concatenate([demo_actions, np.repeat(demo_actions[-1:], pad, axis=0)])[:max_steps]
    engine = LiberoTaskEngine(scene, len(init_ids), 1, cameras=None, max_steps=max_steps)
    try:
        engine.reset(init_state_ids=init_ids, render=False)
        for action in actions:
            active = np.nonzero(~engine.done)[0]
            if active.size == 0:
                break
            engine.step(np.repeat(action[None, None, :], active.size, axis=0), active, render=False)
        return engine.success.copy()
    finally:
        engine.close()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", default="libero_goal")
    p.add_argument("--tasks", nargs="+", type=int, default=[1, 2, 4, 6, 8, 9])
    p.add_argument("--demo-id", type=int, default=0, help="the init state the demo starts from")
    p.add_argument("--init-ids", nargs="+", type=int, default=list(range(30, 50)),
                   help="init states to replay on (default: libero_learn's evaluation states)")
    p.add_argument("--max-steps", type=int, default=224)
    args = p.parse_args(argv)

    from vlarl_fast.envs.libero.expert_runs import run_expert
    from vlarl_fast.envs.libero.registry import get_task
    from vlarl_fast.envs.libero.scene import LiberoScene

    ids = np.asarray(args.init_ids, dtype=np.int64)
    total = 0
    for index in args.tasks:
        scene = LiberoScene(get_task(args.suite, index))
        demo = run_expert(scene, [args.demo_id], record=True, image_size=16, num_threads=1)
        if not demo["success"][0]:
            raise SystemExit(f"the expert failed {args.suite} task {index} from init state {args.demo_id}")
        actions = demo["episodes"][0].actions
        ok = int(replay_success(scene, actions, ids, args.max_steps).sum())
        total += ok
        print(f"| {index} | {scene.task.name} | {len(actions)} | {ok}/{len(ids)} |", flush=True)
    print(f"overall: {total}/{len(ids) * len(args.tasks)} = {total / (len(ids) * len(args.tasks)):.3f}")


if __name__ == "__main__":
    main()
