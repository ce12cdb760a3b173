"""LIBERO demonstrations for one-demo SFT: recorded by the scripted expert into files in LIBERO's
dataset layout (demo_file.py), and read back as SFT samples.

    paths = record_demo_files(tasks, scenes, init_ids=[0], out_dir="runs/x/demos", image_size=64)
    frames, instructions, actions, proprio = sft_samples([p for p in paths], chunk_len=8)

A file per task, named as LIBERO names its datasets: `<task name>_demo.hdf5`. SFT samples are
every control step of every demo: (the frames before the step, agentview and, where the policy
sees it, the wrist camera's, the next `chunk_len` actions), the last action repeated past the
demo's end -- OpenVLA-OFT's action-chunk targets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from vlarl_fast.envs.libero.demo_file import CAMERA_KEYS, read_demos, write_demos


def demo_path(directory, task) -> Path:
    return Path(directory) / f"{task.name}_demo.hdf5"


def record_demo_files(tasks, scenes: dict, *, init_ids: Sequence[int], out_dir, image_size: int,
                      fast_render: bool = False, image_convention: str = "openvla", num_threads: int | None = None,
                      max_steps: int | None = None, overwrite: bool = False, log=None,
                      cameras: Sequence[str] = ("agentview",)) -> list[Path]:
    """Runs the expert on each task from `init_ids` and writes the successful episodes (all of them
    must succeed: a failed demo is an error naming the task and init state), with the frames of
    `cameras` (agentview is always recorded: LIBERO's datasets hold it)."""
    cameras = ["agentview", *(c for c in cameras if c != "agentview")]
    from vlarl_fast.envs.libero.expert_runs import run_expert
    from vlarl_fast.envs.libero.scene import LiberoScene

    paths = []
    for task in tasks:
        path = demo_path(out_dir, task)
        paths.append(path)
        if path.is_file() and not overwrite:
            continue
        key = (task.suite, task.index)
        if key not in scenes:
            scenes[key] = LiberoScene(task)
        result = run_expert(scenes[key], init_ids, max_steps=max_steps, num_threads=num_threads, record=True,
                            image_size=image_size, fast_render=fast_render, image_convention=image_convention,
                            cameras=cameras)
        failed = [int(i) for i, ok in zip(result["init_state_ids"], result["success"]) if not ok]
        if failed:
            raise RuntimeError(f"the scripted expert failed {task.suite} task {task.index} ({task.name}) from init "
                               f"state(s) {failed}; choose other sft.init_ids")
        write_demos(path, task, result["episodes"], image_convention=image_convention)
        if log is not None:
            log(f"[demos] {path}: {len(result['episodes'])} demo(s), "
                f"{int(sum(len(e) for e in result['episodes']))} steps")
    return paths


def chunk_targets(actions: np.ndarray, chunk_len: int) -> np.ndarray:
    """[T, D] actions -> [T, chunk_len, D]: from every step the next chunk_len actions, the last
    action repeated past the end."""
    t = actions.shape[0]
    idx = np.minimum(np.arange(t)[:, None] + np.arange(chunk_len)[None], t - 1)
    return actions[idx]


def sft_samples(paths: Sequence, *, chunk_len: int, frame_shape: tuple, image_convention: str,
                max_demos: int | None = None, cameras: Sequence[str] = ("agentview",)
                ) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray | None]:
    """Samples from demo files: frames [N, C, H, W, 3] uint8 (C = len(cameras), in that order),
    instructions [N], actions [N, K, 7], proprio [N, 8] (the robot state before each sample's first
    action; None when a demo lacks it). `frame_shape` (cameras, H, W, 3), `image_convention` and
    `cameras` are the rollout env's: demo frames must match what the policy sees in rollouts."""
    cameras = list(cameras)
    unknown = [c for c in cameras if c not in CAMERA_KEYS]
    if unknown or not cameras or len(cameras) != frame_shape[0]:
        raise ValueError(f"sft_samples: cameras {cameras} must be agentview and/or robot0_eye_in_hand, one per "
                         f"frame of the env's frame shape {tuple(frame_shape)}")
    frames, instructions, actions, proprio = [], [], [], []
    for path in paths:
        demos = read_demos(path)
        if demos.image_convention != image_convention:
            raise ValueError(f"demo file {path}: frames in image convention {demos.image_convention!r}, the env "
                             f"renders {image_convention!r}; record the demos with the env's settings")
        wrist = demos.wrist_frames or [None] * len(demos.frames)
        for f, w, a, q in list(zip(demos.frames, wrist, demos.actions, demos.proprio))[:max_demos]:
            if "robot0_eye_in_hand" in cameras and w is None:
                raise ValueError(f"demo file {path}: no wrist camera frames (obs/eye_in_hand_rgb), the env renders "
                                 f"{cameras}; record the demos with the env's cameras")
            by_camera = {"agentview": f, "robot0_eye_in_hand": w}
            stacked = np.stack([by_camera[c] for c in cameras], axis=1)
            if stacked.shape[1:] != tuple(frame_shape):
                raise ValueError(f"demo file {path}: frames of shape {stacked.shape[1:]}, the env renders "
                                 f"{tuple(frame_shape)} (cameras, H, W, 3); record the demos at the env's size")
            frames.append(stacked)
            actions.append(chunk_targets(a, chunk_len))
            instructions += [demos.language] * len(a)
            proprio.append(q)
    state = None if any(q is None for q in proprio) else np.concatenate(proprio).astype(np.float32)
    return np.concatenate(frames), instructions, np.concatenate(actions), state
