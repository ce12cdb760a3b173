"""The pipelined rollout (one half of the envs simulates while the policy infers the other half's
chunk, LIBERO's send/recv) gives exactly the lockstep rollout's trajectories: images, tokens,
log-probs, executed steps and rewards, for the same seed, with episodes that end at different
chunks (solved starts stop at their first step)."""

import numpy as np
import pytest
import torch

from vlarl_fast.envs.libero.chunk_env import LiberoChunkEnv
from vlarl_fast.envs.libero.registry import get_task
from vlarl_fast.policy import load_pretrained
from vlarl_fast.rl.rollout import resolve_pipeline, rollout

from conftest import solved_state, tiny_checkpoint


def _episodes(get_scene):
    tasks, states = [], []
    for index, solved in ((0, False), (1, True), (0, True), (1, False), (0, False)):
        task = get_task("libero_spatial", index)
        base = task.init_states()[index + 2]
        tasks.append(task)
        states.append(solved_state(get_scene("libero_spatial", index), base) if solved else base)
    return tasks, states


@pytest.mark.parametrize("threads", [1, 2])
def test_pipelined_rollout_equals_lockstep(threads, tmp_path, get_scene, scene_dict):
    policy = load_pretrained(tiny_checkpoint(tmp_path / "ckpt"), dtype=torch.float32, device="cpu")
    tasks, states = _episodes(get_scene)
    runs = {}
    env = LiberoChunkEnv(len(tasks), threads, cameras=["agentview"], height=32, width=32,
                         max_steps=24, scenes=scene_dict)
    try:
        for schedule in ("lockstep", "pipelined"):
            batch, times = rollout(policy, env, tasks, states, task_ids=np.zeros(len(tasks)),
                                   group_ids=np.arange(len(tasks)), max_chunks=3, temperature=1.6,
                                   generator=torch.Generator().manual_seed(3),
                                   unnorm_key="libero_spatial_no_noops", pipeline=schedule)
            assert times.extra["pipeline"] == schedule
            runs[schedule] = (batch, env.check_success())
    finally:
        env.close()
    a, b = runs["lockstep"][0], runs["pipelined"][0]
    for name in ("images", "tokens", "logp", "executed", "success", "task_ids", "group_ids"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.success.tolist() == [False, True, True, False, False]
    assert a.executed.sum(axis=1).tolist() == [24, 1, 1, 24, 24]
    np.testing.assert_array_equal(runs["lockstep"][1], runs["pipelined"][1])


def test_schedule_switch():
    class NoAsync:
        num_envs = 4

    assert resolve_pipeline("auto", NoAsync(), 4) == "lockstep"
    assert resolve_pipeline("pipelined", NoAsync(), 4) == "lockstep"
    with pytest.raises(ValueError, match="pipeline must be one of"):
        resolve_pipeline("fast", NoAsync(), 4)

    class Async(NoAsync):
        def send(self, *a):
            pass

        def recv(self, *a):
            pass

    # auto: pipelined only for a policy off the CPU (docs/rollout.md: on the CPU lockstep is as
    # fast or faster, with the policy on a device pipelined is faster); explicit choices hold.
    assert resolve_pipeline("auto", Async(), 4, "cpu") == "lockstep"
    assert resolve_pipeline("auto", Async(), 4, "cuda:0") == "pipelined"
    assert resolve_pipeline("auto", Async(), 1, "cuda") == "lockstep"
    assert resolve_pipeline("pipelined", Async(), 4, "cpu") == "pipelined"
    assert resolve_pipeline("lockstep", Async(), 4, "cuda") == "lockstep"
