"""Swapping LIBERO's SubprocVectorEnv for the native engine's gymnasium VectorEnv.

Before (RLinf / veRL's VLA recipe / LeRobot style):

    envs = SubprocVectorEnv([lambda: OffScreenRenderEnv(bddl_file_name=f, camera_heights=256,
                             camera_widths=256) for f in bddl_files])
    envs.seed(0); envs.reset(); obs = envs.set_init_state(init_states)
    for a in chunk: obs, r, done, info = envs.step(a)          # one action, N processes

After: one process, N envs on native threads, a chunk per step call:

    python examples/libero_vector_env.py --suite libero_spatial --envs-per-task 2 --tasks 0 1
"""

import argparse

import numpy as np

from vlarl_fast.envs.libero.vector_env import LiberoVectorEnv


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--suite", default="libero_spatial")
    p.add_argument("--tasks", type=int, nargs="+", default=[0])
    p.add_argument("--envs-per-task", type=int, default=2)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--chunks", type=int, default=3)
    args = p.parse_args()

    env = LiberoVectorEnv(args.suite, task_ids=args.tasks, envs_per_task=args.envs_per_task,
                          chunk=8, height=args.size, width=args.size)
    obs, info = env.reset(seed=0)
    print("instructions:", sorted(set(info["task"])))
    rng = np.random.default_rng(0)
    for c in range(args.chunks):
        actions = rng.uniform(-0.3, 0.3, size=env.action_space.shape)  # your policy here
        actions[..., 6] = -1.0
        obs, reward, terminated, truncated, info = env.step(actions)
        print(f"chunk {c}: agentview {obs['agentview_image'].shape}, state[0] "
              f"{np.round(obs['state'][0], 3)}, success {info['success'].tolist()}")
    env.close()


if __name__ == "__main__":
    main()
