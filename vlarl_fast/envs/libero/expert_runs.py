"""Expert episodes of a LIBERO task on the native engine: success rates over init states, and
recorded demonstrations (LIBERO's dataset layout: demo_file.py).

    result = run_expert(scene, range(50))                       # success [50], steps [50]
    result = run_expert(scene, [0], record=True, image_size=64) # + result["episodes"] (demo_file.Episode)

Episodes start as the task engine starts them (LIBERO's first step, the settle steps) and end at
the first control step after which LIBERO's goal holds (decided by LIBERO's own code), or after
`max_steps` control steps. All envs of a call step together: one native call per control step.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from vlarl_fast.envs.libero.demo_file import CAMERA_KEYS, Episode
from vlarl_fast.envs.libero.expert import LiberoExpert
from vlarl_fast.envs.libero.registry import SETTLE_STEPS
from vlarl_fast.envs.libero.task_engine import LiberoTaskEngine


def _record_step(task_engine: LiberoTaskEngine, ids: np.ndarray, frames, cameras) -> dict:
    eng = task_engine.engine
    obs = eng.spec.observation
    quat = eng.field("xquat")[ids, obs["eef_body"]].copy()  # w x y z
    joints = eng.qpos[ids][:, :7].copy()
    state = np.concatenate([eng.time[ids][:, None], eng.qpos[ids], eng.qvel[ids]], axis=1)
    proprio = task_engine.proprio(ids)  # what the policy's state input is in rollouts
    pos, ori, grip = proprio[:, :3], proprio[:, 3:6], proprio[:, 6:]
    return {"state": state, "ee_pos": pos, "ee_ori": ori, "ee_states": np.concatenate([pos, ori], 1),
            "gripper_states": grip, "joint_states": joints,
            "robot_states": np.concatenate([grip, pos, quat[:, [1, 2, 3, 0]]], 1),
            **{CAMERA_KEYS[c]: frames[:, j].copy() for j, c in enumerate(cameras)}}


def run_expert(scene, init_state_ids: Sequence[int], *, max_steps: int | None = None,
               num_threads: int | None = None, record: bool = False, image_size: int = 128,
               fast_render: bool = False, image_convention: str = "openvla",
               settle_steps: int = SETTLE_STEPS, cameras: Sequence[str] = ("agentview",)) -> dict:
    """The expert on `scene`'s task from each init state id. Returns {"success" [n] bool,
    "steps" [n] control steps, "init_state_ids", "episodes" (with `record`: per env a
    `demo_file.Episode` with the frames of `cameras` (agentview first, LIBERO's datasets hold it)
    at `image_size`)}."""
    ids0 = np.asarray(list(init_state_ids), dtype=np.int64)
    n = ids0.size
    if n == 0:
        raise ValueError("run_expert: expected at least one init state id")
    cameras = list(cameras)
    if record and (not cameras or cameras[0] != "agentview" or len(set(cameras)) != len(cameras)
                   or any(c not in CAMERA_KEYS for c in cameras)):
        raise ValueError(f"run_expert: cameras must be 'agentview' first, then optionally "
                         f"'robot0_eye_in_hand', each once; got {cameras}")
    max_steps = scene.task.max_steps if max_steps is None else int(max_steps)
    options = dict(cameras=cameras, height=image_size, width=image_size,
                   image_convention=image_convention) if record else dict(cameras=None)
    if record and fast_render:
        options["fast"] = True
    te = LiberoTaskEngine(scene, n, num_threads, max_steps=max_steps, settle_steps=settle_steps, **options)
    try:
        expert = LiberoExpert(scene)
        env_ids = np.arange(n)
        frames = te.reset(init_state_ids=ids0, env_ids=env_ids, render=record)  # [n, cameras, H, W, 3]
        expert.reset(te.engine, env_ids)
        logs = [[] for _ in range(n)]
        actions = [[] for _ in range(n)]
        while True:
            active = np.nonzero(~te.done)[0]
            if active.size == 0:
                break
            act = expert.act(te.engine, active)
            if record:
                rec = _record_step(te, active, frames[active], cameras)
                for row, i in enumerate(active):
                    logs[i].append({k: v[row] for k, v in rec.items()})
                    actions[i].append(act[row])
            out = te.step(act[:, None, :], active, render=record)
            if record:
                frames[active] = out.frames
        result = {"success": te.success.copy(), "steps": te.episode_steps.copy(), "init_state_ids": ids0}
        if record:
            table = scene.task.init_states()
            result["episodes"] = [
                Episode(actions=np.stack(actions[i]), states=np.stack([r["state"] for r in logs[i]]),
                        obs={k: np.stack([r[k] for r in logs[i]]) for k in
                             (*(CAMERA_KEYS[c] for c in cameras), "ee_pos", "ee_ori", "ee_states",
                              "gripper_states", "joint_states")},
                        robot_states=np.stack([r["robot_states"] for r in logs[i]]),
                        init_state=table[ids0[i]], init_state_id=int(ids0[i]), success=bool(te.success[i]))
                for i in range(n)]
        return result
    finally:
        te.close()
