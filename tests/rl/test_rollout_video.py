"""Rollout videos end with each episode's last real frame: an episode that stops early (success)
is neither padded with the env's black done-frames nor longer than it ran."""

from __future__ import annotations

import numpy as np
from vlarl_fast.envs.chunk_env import ChunkResult
from vlarl_fast.rl.evaluate import EvalSet, evaluate
from vlarl_fast.rl.policy_setup import build_policy


class ScriptedEnv:
    """A ChunkEnv whose env i succeeds after `ends[i]` chunks; frames are non-black while running
    and black (zeros) once done, as the real chunk envs return them."""

    def __init__(self, ends):
        self.ends = np.asarray(ends)
        self.num_envs = len(ends)
        self.chunks = np.zeros(self.num_envs, dtype=int)

    def _frames(self, ids):
        f = np.zeros((len(ids), 1, 16, 16, 3), np.uint8)
        for row, i in enumerate(ids):
            f[row] = 10 + 20 * self.chunks[i]  # distinct, never black
        return f

    def reset(self, states, tasks, env_ids=None):
        ids = np.arange(len(tasks)) if env_ids is None else np.asarray(env_ids)
        self.chunks[ids] = 0
        return self._frames(ids)

    def step_chunk(self, actions, env_ids=None):
        ids = np.asarray(env_ids)
        self.chunks[ids] += 1
        done = self.chunks[ids] >= self.ends[ids]
        frames = self._frames(ids)
        frames[done] = 0
        k = actions.shape[1]
        return ChunkResult(executed=np.where(done, 3, k), success=done, done=done, frames=frames)

    def proprio(self, env_ids=None):
        return None

    def close(self):
        pass


class _Task:
    name, instruction = "scripted", "reach the red cube"


def test_videos_stop_at_each_episodes_last_real_frame():
    policy = build_policy(16, 0)
    env = ScriptedEnv([1, 3, 2])
    eval_set = EvalSet([_Task()] * 3, np.zeros(3, np.int64), np.arange(3), np.zeros((3, 4)))
    result = evaluate(policy, env, eval_set, max_chunks=5, videos=3, seed=0)
    assert result["episode_success"] == [True, True, True]
    lengths = [len(clip) for _, _, clip in result["videos"]]
    # the frames the policy saw: the first, then one after each chunk but the last (the env
    # renders none for a finished episode); nothing repeated, nothing black
    assert lengths == [1, 3, 2]
    for _, _, clip in result["videos"]:
        assert all(frame.any() for frame in clip), "a black frame in a video"
        assert len({int(frame[0, 0, 0]) for frame in clip}) == len(clip), "a repeated frame"


def test_videos_spread_over_the_tasks():
    from vlarl_fast.rl.evaluate import video_episodes

    task_ids = np.repeat([0, 1, 2], 4)  # the evaluation set's layout: a task's episodes together
    assert np.flatnonzero(video_episodes(task_ids, 3)).tolist() == [0, 4, 8]
    assert np.flatnonzero(video_episodes(task_ids, 5)).tolist() == [0, 1, 4, 5, 8]
    assert video_episodes(task_ids, 0).sum() == 0 and video_episodes(task_ids, 99).all()
    assert np.flatnonzero(video_episodes(np.array([2, 2, 0]), 2)).tolist() == [0, 2]
