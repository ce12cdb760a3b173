"""SimpleVLA-RL's LIBERO env side, restated from PRIME-RL/SimpleVLA-RL (commit 7c51662):
`verl/workers/rollout/rob_rollout.py` (`env_worker`, the env part of
`RobHFRollout._generate_minibatch_libero`, `_obs_to_input`'s state) and `verl/utils/libero_utils.py`
(`get_libero_env`, `get_libero_dummy_action`, `normalize_gripper_action`,
`invert_gripper_action`, `quat2axisangle`), run on LIBERO's own `OffScreenRenderEnv`.

The reference of tests/compat/test_simplevla_env.py and of benchmarks/bench_simplevla_env.py.
`env_worker` is the original's body line for line, written as a generator so that a test can
drive it in-process (`output_queue.put(x)` followed by `input_queue.get()` is `yield x`);
`worker_process` runs it in a process behind two `multiprocessing.Queue`s, as SimpleVLA-RL does.
Changes: `resolution` (the original's 256) and `make_env` / `initial_state` hooks (a cached env,
a crafted init state) for tests.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict

import numpy as np


# ---- verl/utils/libero_utils.py ----------------------------------------------------------------
def get_libero_env(task, model_family, resolution=256):
    from libero.libero import get_libero_path
    from libero.libero.envs import OffScreenRenderEnv

    task_description = task.language
    task_bddl_file = os.path.join(get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
    env_args = {"bddl_file_name": task_bddl_file, "camera_heights": resolution, "camera_widths": resolution}
    env = OffScreenRenderEnv(**env_args)
    env.seed(0)  # IMPORTANT: seed seems to affect object positions even when using fixed initial state
    return env, task_description


def get_libero_dummy_action(model_family: str):
    return [0, 0, 0, 0, 0, 0, -1]


def normalize_gripper_action(action: np.ndarray, binarize: bool = True) -> np.ndarray:
    normalized_action = action.copy()
    orig_low, orig_high = 0.0, 1.0
    normalized_action[..., -1] = 2 * (normalized_action[..., -1] - orig_low) / (orig_high - orig_low) - 1
    if binarize:
        normalized_action[..., -1] = np.sign(normalized_action[..., -1])
    return normalized_action


def invert_gripper_action(action: np.ndarray) -> np.ndarray:
    inverted_action = action.copy()
    inverted_action[..., -1] = inverted_action[..., -1] * -1.0
    return inverted_action


def quat2axisangle(quat):
    quat = np.array(quat)  # (the original clips in place; a copy leaves the observation intact)
    if quat[3] > 1.0:
        quat[3] = 1.0
    elif quat[3] < -1.0:
        quat[3] = -1.0
    den = np.sqrt(1.0 - quat[3] * quat[3])
    if math.isclose(den, 0.0):
        return np.zeros(3)
    return (quat[:3] * 2.0 * math.acos(quat[3])) / den


def obs_state(obs) -> np.ndarray:
    """`_obs_to_input`'s LIBERO state."""
    return np.concatenate([obs["robot0_eef_pos"], quat2axisangle(obs["robot0_eef_quat"]),
                           obs["robot0_gripper_qpos"]])


# ---- verl/workers/rollout/rob_rollout.py: env_worker ----------------------------------------------
class Config:
    """The fields of SimpleVLA-RL's rollout config that env_worker and the loop read."""

    def __init__(self, num_steps_wait=10, action_chunks_len=8, model_family="openvla"):
        self.num_steps_wait = num_steps_wait
        self.action_chunks_len = action_chunks_len
        self.model_family = model_family


def env_worker(task_name, task_id, trial_id, config, is_valid, global_steps, max_steps, *,
               resolution=256, make_env=None, initial_state=None):
    """Worker for Libero environments, as a generator: yields the 'init' message, then receives
    an action chunk (or None) per `send` and yields the 'step' message (or 'terminate')."""
    from libero.libero import benchmark

    benchmark_dict = benchmark.get_benchmark_dict()
    task_suite = benchmark_dict[task_name]()
    task = task_suite.get_task(task_id)
    initial_states = task_suite.get_task_init_states(task_id)
    initial_state = initial_states[trial_id] if initial_state is None else initial_state

    if make_env is None:
        env, task_description = get_libero_env(task, config.model_family, resolution=resolution)
    else:
        env, task_description = make_env(task)

    env.reset()
    obs = env.set_init_state(initial_state)

    t = 0
    valid_images = []
    while t < config.num_steps_wait:
        obs, _, _, _ = env.step(get_libero_dummy_action(config.model_family))
        t += 1

    if is_valid:
        img = obs["agentview_image"][::-1, ::-1]
        valid_images.append(img)

    action = yield {
        'type': 'init',
        'obs': obs,
        "task_description": task_description,
        'valid_images': valid_images.copy(),
        'task_file_name': f"{task_name}_task_{task_id}_trial_{trial_id}",
        'active': True,
        'complete': False,
        'finish_step': 0
    }

    active = True
    complete = False
    finish_step = 0

    while True:
        if action is None:
            env.close()
            yield {'type': 'terminate'}
            return

        step_images = []
        for i in range(len(action)):
            a = action[i]
            normalized_action = normalize_gripper_action(a, binarize=True)
            inverted_action = invert_gripper_action(normalized_action)
            obs, reward, done, info = env.step(inverted_action.tolist())

            if is_valid:
                img = obs["agentview_image"][::-1, ::-1]
                step_images.append(img)

            finish_step += 1
            if done or finish_step >= max_steps:
                active = False
                complete = done
                break

        output_data = {
            'type': 'step',
            'obs': obs,
            'active': active,
            'complete': complete,
            'finish_step': finish_step,
            'valid_images': step_images.copy() if is_valid else []
        }
        action = yield output_data


def worker_process(input_queue, output_queue, *args, **kwargs):
    """env_worker in its own process, behind SimpleVLA-RL's two queues."""
    import warnings

    from vlarl_fast.envs.libero.config import import_libero

    warnings.filterwarnings("ignore")
    import_libero()  # this machine's LIBERO config and asset folder (a LIBERO checkout has its own)
    gen = env_worker(*args, **kwargs)
    output_queue.put(next(gen))
    while True:
        action = input_queue.get()
        msg = gen.send(action)
        output_queue.put(msg)
        if action is None:
            break


# ---- the env part of RobHFRollout._generate_minibatch_libero -------------------------------------
def rollout(workers, actions_at, config, max_steps, is_valid, on_obs=None, marks=None):
    """Drives env workers as `_generate_minibatch_libero` does. `workers`: one started channel
    per row with `get()` -> message and `put(action)`; `actions_at(step)` -> [batch, K, 7] the
    model's actions at that rollout step; `on_obs(step, idx, obs)` sees every observation the
    loop hands to `_obs_to_input`; `marks` (a dict) gets perf_counter() times 'init' (all init
    messages in) and 'loop' (the last chunk's results in). Returns (task_records, valid_video)."""
    import time

    batch_size = len(workers)
    task_records = []
    valid_video = defaultdict(list)
    for idx in range(batch_size):
        init_data = workers[idx].get()
        assert init_data['type'] == 'init'
        if on_obs is not None:
            on_obs(-1, idx, init_data['obs'])
        task_records.append({"active": init_data['active'], "complete": init_data['complete'],
                             "finish_step": init_data['finish_step'],
                             "task_file_name": init_data['task_file_name']})
        if is_valid:
            valid_video[init_data['task_file_name']].extend(init_data['valid_images'])
    if marks is not None:
        marks['init'] = time.perf_counter()
    step = 0
    while step < max_steps:
        active_indices = [i for i, r in enumerate(task_records) if r['active']]
        actions = actions_at(step)
        for idx in active_indices:
            workers[idx].put(actions[idx])
        for idx in active_indices:
            result = workers[idx].get()
            assert result['type'] == 'step'
            if on_obs is not None:
                on_obs(step, idx, result['obs'])
            task_records[idx]['active'] = result['active']
            task_records[idx]['complete'] = result['complete']
            task_records[idx]['finish_step'] = result['finish_step']
            if is_valid:
                valid_video[task_records[idx]['task_file_name']].extend(result['valid_images'])
        step += config.action_chunks_len
    if marks is not None:
        marks['loop'] = time.perf_counter()
    for w in workers:
        w.put(None)
    return task_records, valid_video


class InProcessWorker:
    """A worker channel over the env_worker generator (no process: the test's reference)."""

    def __init__(self, *args, **kwargs):
        self._gen = env_worker(*args, **kwargs)
        self._pending = [next(self._gen)]

    def put(self, action):
        if action is None:  # the original closes its env; a cached env stays open
            self._gen.close()
            return
        self._pending.append(self._gen.send(action))

    def get(self):
        return self._pending.pop(0)
