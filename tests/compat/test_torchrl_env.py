"""The TorchRL face of the native LIBERO pool (`vlarl_fast.compat.torchrl_env.NativeLiberoEnv`):
TorchRL's own `check_env_specs` passes; a TorchRL collector over it gives, step for step, the
trajectories the native pool (`LiberoChunkEnv`) gives for the same actions, auto-resets
included; partial resets (`"_reset"`), partial steps (`"_step"`), success and truncation set
the right flags. Small frames, few steps: real LIBERO scenes from ../shared/libero_assets."""

from __future__ import annotations

import functools
import importlib.util
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault("VLARL_LIBERO_ASSETS", str(REPO.parent / "shared" / "libero_assets"))
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
if "LIBERO_CONFIG_PATH" not in os.environ:
    os.environ["LIBERO_CONFIG_PATH"] = tempfile.mkdtemp(prefix="vlarl_libero_cfg_")

pytest.importorskip("libero")
pytest.importorskip("torchrl")
if not (Path(os.environ["VLARL_LIBERO_ASSETS"]) / "scenes").is_dir():
    pytest.skip("LIBERO assets not found (set VLARL_LIBERO_ASSETS)", allow_module_level=True)

import torch  # noqa: E402
from tensordict import TensorDict  # noqa: E402
from tensordict.nn import TensorDictModule  # noqa: E402
from torchrl.collectors import Collector  # noqa: E402
from torchrl.envs.utils import check_env_specs  # noqa: E402

from vlarl_fast.compat.torchrl_env import NativeLiberoEnv  # noqa: E402
from vlarl_fast.envs.libero.chunk_env import LiberoChunkEnv  # noqa: E402
from vlarl_fast.envs.libero.registry import get_task  # noqa: E402

SUITE = "libero_spatial"  # every task's goal is On(bowl, plate): solved_state applies
SIZE, K, SETTLE, MAX_STEPS = 32, 2, 2, 5  # 5 control steps: chunks of 2, 2, then 1


@functools.cache
def _libero_helpers():
    spec = importlib.util.spec_from_file_location("_libero_test_helpers_torchrl",
                                                  REPO / "tests" / "libero" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _solved_state(scene, state):
    """`state` with the bowl placed above the plate: LIBERO's goal holds soon after the start."""
    return _libero_helpers().solved_state(scene, state)


@pytest.fixture(scope="module")
def scenes():
    from vlarl_fast.envs.libero.scene import LiberoScene

    return {(SUITE, i): LiberoScene(get_task(SUITE, i)) for i in (0, 1)}


def _env(scenes, task_id, **kw):
    opts = dict(chunk_size=K, camera_height=SIZE, camera_width=SIZE, settle_steps=SETTLE,
                max_episode_steps=MAX_STEPS, num_threads=2, scenes=scenes)
    opts.update(kw)
    return NativeLiberoEnv(SUITE, task_id, **opts)


def test_specs_pass_torchrl_check_and_match_libero_env_schema(scenes):
    env = _env(scenes, [0, 1], wrist_camera="robot0_eye_in_hand", from_pixels=True,
               group_repeats=2, init_state_mode="cycle", seed=0)
    try:
        check_env_specs(env, seed=0)
        td = env.reset()
        assert td["observation", "image"].shape == (2, 3, SIZE, SIZE)
        assert td["observation", "image"].dtype == torch.uint8
        assert td["observation", "wrist_image"].shape == (2, 3, SIZE, SIZE)
        assert td["pixels"].shape == (2, SIZE, SIZE, 3)
        assert torch.equal(td["pixels"], td["observation", "image"].permute(0, 2, 3, 1))
        assert td["observation", "state"].shape == (2, 9)
        assert td["observation", "state"].dtype == torch.float32
        assert list(td["language_instruction"]) == [get_task(SUITE, i).language for i in (0, 1)]
        assert td["task_id"].squeeze(-1).tolist() == [0, 1]
        assert env.action_spec.shape == (2, K, 7)
        # TorchRL's default proprio (eef pos, eef quat xyzw, gripper qpos) is OpenVLA-OFT's
        # axis-angle state with the orientation as a quaternion.
        state = td["observation", "state"].double().numpy()
        oft = env.pool.proprio()
        np.testing.assert_allclose(state[:, :3], oft[:, :3], rtol=1e-6)
        np.testing.assert_allclose(state[:, 7:], oft[:, 6:], rtol=1e-5, atol=1e-7)
        x, w = state[:, 3:6], np.clip(state[:, 6:7], -1, 1)  # robosuite's quat2axisangle
        axis_angle = x * 2 * np.arccos(w) / np.maximum(np.sqrt(1 - w * w), 1e-12)
        np.testing.assert_allclose(axis_angle, oft[:, 3:6], atol=1e-4)
    finally:
        env.close()


class _StatePolicy(torch.nn.Module):
    """A fixed, deterministic policy: the chunk is a function of the robot state."""

    def __init__(self, state_dim: int):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.weight = torch.randn(state_dim, K * 7, generator=gen)

    def forward(self, state):
        return (0.8 * torch.tanh(state @ self.weight)).reshape(-1, K, 7)


def test_collector_gives_the_native_pool_trajectories(scenes):
    """3 envs (tasks 0, 0, 1), env 0 starting solved: it succeeds at its first step, the others
    are truncated at step 3; the collector auto-resets them, 6 steps in all."""
    n, steps = 3, 6
    tasks = [0, 0, 1]
    tables = [get_task(SUITE, t).init_states() for t in tasks]
    tables[0] = np.stack([_solved_state(scenes[(SUITE, 0)], tables[0][3])] * 4)
    init_ids = [3, 5, 7]
    env = _env(scenes, tasks, state="axis_angle", init_states=tables, init_state_mode="fixed",
               init_state_id=init_ids)
    policy = _StatePolicy(8)
    module = TensorDictModule(policy, in_keys=[("observation", "state")], out_keys=["action"])
    collector = Collector(env, module, frames_per_batch=n * steps, total_frames=n * steps)
    try:
        data = next(iter(collector))
    finally:
        collector.shutdown()
        env.close()
    assert data.batch_size == (n, steps)

    # The native pool, driven by hand with the same policy.
    pool = LiberoChunkEnv(n, 2, cameras=["agentview"], height=SIZE, width=SIZE,
                          max_steps=MAX_STEPS, settle_steps=SETTLE, scenes=scenes)
    states = [tables[i][init_ids[i]] for i in range(n)]
    task_objs = [get_task(SUITE, t) for t in tasks]
    try:
        frames = pool.reset(states, task_objs)
        proprio = pool.proprio()
        for t in range(steps):
            np.testing.assert_array_equal(data["observation", "image"][:, t].numpy(),
                                          frames[:, 0].transpose(0, 3, 1, 2))
            state = torch.from_numpy(proprio.astype(np.float32))
            assert torch.equal(data["observation", "state"][:, t], state)
            actions = policy(state)
            assert torch.equal(data["action"][:, t], actions)
            out = pool.step_chunk(actions.double().numpy(), render=False)
            frames, proprio = pool.render(), pool.proprio()
            nxt = data["next"][:, t]
            np.testing.assert_array_equal(nxt["observation", "image"].numpy(),
                                          frames[:, 0].transpose(0, 3, 1, 2))
            assert torch.equal(nxt["observation", "state"],
                               torch.from_numpy(proprio.astype(np.float32)))
            assert nxt["success"].squeeze(-1).tolist() == out.success.tolist()
            assert nxt["reward"].squeeze(-1).tolist() == out.success.astype(float).tolist()
            assert nxt["done"].squeeze(-1).tolist() == out.done.tolist()
            assert nxt["terminated"].squeeze(-1).tolist() == out.success.tolist()
            assert nxt["truncated"].squeeze(-1).tolist() == (out.done & ~out.success).tolist()
            ended = np.nonzero(out.done)[0]
            if ended.size:
                frames[ended] = pool.reset([states[i] for i in ended],
                                           [task_objs[i] for i in ended], ended)
                proprio[ended] = pool.proprio(ended)
        assert data["next", "terminated"][0].squeeze(-1).all()  # solved: every chunk succeeds
        assert data["next", "truncated"][1].squeeze(-1).tolist() == [False, False, True] * 2
        assert list(data["language_instruction"][2]) == [task_objs[2].language] * steps
        assert (data["init_state_id"].squeeze(-1) == torch.tensor(init_ids)[:, None]).all()
    finally:
        pool.close()


def test_partial_reset_partial_step_and_done(scenes):
    tables = [get_task(SUITE, 0).init_states()] * 2
    tables += [np.stack([_solved_state(scenes[(SUITE, 0)], tables[0][0])])]
    env = _env(scenes, [0, 0, 0], init_states=tables, init_state_mode="cycle", max_episode_steps=3)
    chunk = TensorDict({"action": torch.zeros(3, K, 7)}, batch_size=[3])
    flags = ("done", "terminated", "truncated", "reward")

    def flat(td, key):
        return td["next", key].squeeze(-1).tolist()

    try:
        first = env.reset()
        assert first["init_state_id"].squeeze(-1).tolist() == [0, 0, 0]
        out = env.step(chunk.clone())
        assert env.episode_steps.tolist() == [2, 2, 2]  # env 2 succeeds at its 2nd step
        assert [flat(out, k) for k in flags] == [[False, False, True], [False, False, True],
                                                 [False, False, False], [0.0, 0.0, 1.0]]
        # "_step": env 1 is left alone (no steps, its observation kept, no reward).
        td = chunk.clone()
        td["_step"] = torch.tensor([True, False, True])
        out2 = env.step(td)
        assert env.episode_steps.tolist() == [3, 2, 2]  # env 2 is done: it executes nothing
        assert torch.equal(out2["next", "observation", "image"][1], out["next", "observation", "image"][1])
        assert [flat(out2, k) for k in flags] == [[True, False, True], [False, False, True],
                                                  [True, False, False], [0.0, 0.0, 0.0]]
        # "_reset" on env 0 only: a new episode (init state 1: cycle), envs 1 and 2 untouched.
        reset = env.reset(TensorDict({"_reset": torch.tensor([[True], [False], [False]])},
                                     batch_size=[3]))
        assert env.episode_steps.tolist() == [0, 2, 2]
        assert reset["init_state_id"].squeeze(-1).tolist() == [1, 0, 0]
        assert reset["done"].squeeze(-1).tolist() == [False, False, True]
        assert not torch.equal(reset["observation", "image"][0], first["observation", "image"][0])
        # Resetting env 0 to state 0 again reproduces the first episode's start exactly.
        env.init_state_mode = "fixed"
        again = env.reset(TensorDict({"_reset": torch.tensor([[True], [False], [True]])},
                                     batch_size=[3]))
        for key in (("observation", "image"), ("observation", "state")):
            assert torch.equal(again[key][[0, 2]], first[key][[0, 2]])
        assert again["done"].squeeze(-1).tolist() == [False, False, False]
        with pytest.raises(ValueError, match="action: expected shape"):
            env.step(TensorDict({"action": torch.zeros(3, K + 1, 7)}, batch_size=[3]))
    finally:
        env.close()
