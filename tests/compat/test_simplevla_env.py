"""SimpleVLAEnvPool and the patched RobHFRollout against SimpleVLA-RL's env_worker protocol on
LIBERO's own OffScreenRenderEnv (simplevla_env_reference.py restates SimpleVLA-RL's code).

One batch of libero_spatial task 0 rows, chunks of 8 actions, max_steps 12 (the second chunk is
cut by max_steps after 4 actions): trials 0 and 1 with random actions; trial 0's state with the
goal already reached (complete at finish_step 1, the first action of a chunk); the same with the
bowl thrown upwards so that it lands on the plate at the chunk's third action (a success inside
a chunk: the pool replays that env to its success step for the observation). For every
observation the rollout loop hands to `_obs_to_input` (init and after every chunk), camera images
must be equal pixel for pixel, the robot state to 1e-9 (measured: <= 1e-15); `active`,
`complete`, `finish_step`, and the validation videos' frames must be equal. (What SimpleVLA-RL's
processing computes from the images, `get_libero_image`'s rotation, JPEG and lanczos, is then
equal too; it is not run here: its TensorFlow, and the bit-exact port's triton import, must not
share a process with Mesa's llvmpipe.)"""

import importlib.util
import os
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ASSETS = Path(os.environ.get("VLARL_LIBERO_ASSETS", REPO.parent / "shared" / "libero_assets"))
os.environ.setdefault("VLARL_LIBERO_ASSETS", str(ASSETS))
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
if "LIBERO_CONFIG_PATH" not in os.environ:
    os.environ["LIBERO_CONFIG_PATH"] = tempfile.mkdtemp(prefix="vlarl_libero_cfg_")
if not ASSETS.is_dir():
    pytest.skip(f"LIBERO assets not found at {ASSETS}", allow_module_level=True)
pytest.importorskip("libero")

sys.path.insert(0, str(HERE))
import simplevla_env_reference as R  # noqa: E402

from vlarl_fast.compat.simplevla_env import (SimpleVLAEnvPool, observation_substeps,  # noqa: E402
                                             patch_rob_hf_rollout, postprocess_actions,
                                             unpatch_rob_hf_rollout)

SUITE, TASK = "libero_spatial", 0
FRAME = 64  # camera side: llvmpipe renders slowly
K, MAX_STEPS = 8, 12
ATOL = 1e-9
STATE_KEYS = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "robot0_joint_pos")
IMAGE_KEYS = ("agentview_image", "robot0_eye_in_hand_image")


def _libero_conftest():
    spec = importlib.util.spec_from_file_location("_libero_test_helpers", REPO / "tests" / "libero" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def setup():
    from vlarl_fast.envs.libero.registry import get_task
    from vlarl_fast.envs.libero.scene import LiberoScene, make_libero_env

    task = get_task(SUITE, TASK)
    scene = LiberoScene(task)
    solved = _libero_conftest().solved_state(scene, task.init_states()[0])
    thrown = solved.copy()  # the bowl leaves upwards at 3.5 m/s and lands at the 3rd action
    bowl = scene.goal()[0][1]
    thrown[1 + scene.model.nq + scene.model.jnt_dofadr[scene.model.joint(f"{bowl}_joint0").id] + 2] = 3.5
    rows = [(0, None), (1, None), (2, solved), (3, thrown)]  # (trial id, crafted state)
    rng = np.random.default_rng(7)
    actions = rng.uniform(-0.6, 0.6, size=(2, len(rows), K, 7)).astype(np.float32)  # [chunk, row]
    actions[..., 6] = rng.uniform(0.0, 1.0, size=actions.shape[:-1])
    actions[:, 2:, :, :6] = 0.0  # the crafted rows keep the arm still
    ref_env = make_libero_env(task, height=FRAME, width=FRAME)
    yield dict(task=task, scene=scene, rows=rows, actions=actions, ref_env=ref_env)
    ref_env.close()


def _recorder(store):
    def on_obs(step, idx, obs):
        store[(step, idx)] = {k: np.array(v) for k, v in obs.items()}
    return on_obs


@pytest.fixture(scope="module")
def reference(setup):
    """SimpleVLA-RL's env side (restated env_worker, validation mode) on OffScreenRenderEnv."""
    ref = setup["ref_env"]

    def make_env(task):
        ref.seed(0)  # get_libero_env seeds a fresh env
        return ref, task.language

    config = R.Config(num_steps_wait=10, action_chunks_len=K)
    obs, records, videos = {}, [], {}
    for i, (trial, state) in enumerate(setup["rows"]):  # rows are independent: one env, in turn
        worker = R.InProcessWorker(SUITE, TASK, trial, config, True, 0, MAX_STEPS, make_env=make_env,
                                   initial_state=state)
        recorded = {}
        rec, vid = R.rollout([worker], lambda step: setup["actions"][step // K][i:i + 1], config,
                             MAX_STEPS, True, on_obs=_recorder(recorded))
        obs.update({(step, i): o for (step, _), o in recorded.items()})
        records += rec
        videos.update(vid)
    return dict(obs=obs, records=records, videos=videos)


class PoolChannels:
    """env_worker's channels over one pool: puts are collected, the first get runs one
    `pool.step` for all of them (what the patched rollout does in one call)."""

    def __init__(self, pool, init_messages):
        self.pool = pool
        self.pending = {}
        self.ready = {i: [m] for i, m in enumerate(init_messages)}

    def channel(self, idx):
        outer = self

        class Channel:
            def put(self, action):
                if action is not None:
                    outer.pending[idx] = action

            def get(self):
                if not outer.ready[idx]:
                    rows = sorted(outer.pending)
                    msgs = outer.pool.step([outer.pending.pop(r) for r in rows], rows)
                    for r, m in zip(rows, msgs):
                        outer.ready[r].append(m)
                return outer.ready[idx].pop(0)

        return Channel()


def _assert_obs_equal(got, want, where):
    for key in IMAGE_KEYS:
        assert got[key].shape == want[key].shape == (FRAME, FRAME, 3), (where, key)
        diff = np.abs(got[key].astype(int) - want[key].astype(int))
        assert diff.max() == 0, f"{where} {key}: {np.count_nonzero(diff)} pixels differ (max {diff.max()})"
    for key in STATE_KEYS:
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=ATOL, err_msg=f"{where} {key}")
    np.testing.assert_allclose(R.obs_state(got), R.obs_state(want), rtol=0, atol=ATOL, err_msg=str(where))


@pytest.fixture(scope="module")
def pool(setup):
    p = SimpleVLAEnvPool(max_steps=MAX_STEPS, resolution=FRAME, num_threads=2,
                         scenes={(SUITE, TASK): setup["scene"]})
    yield p
    p.close()


@pytest.mark.parametrize("is_valid", [True, False], ids=["validation", "training"])
def test_pool_matches_env_worker(is_valid, setup, reference, pool):
    rows = setup["rows"]
    engines_before = len(pool.env.all_engines()) if pool.env is not None else 0
    init = pool.start(SUITE, [TASK] * len(rows), [trial for trial, _ in rows], is_valid=is_valid,
                      init_states=[s if s is not None else setup["task"].init_states()[t] for t, s in rows])
    channels = PoolChannels(pool, init)
    obs = {}
    config = R.Config(num_steps_wait=10, action_chunks_len=K)
    records, videos = R.rollout([channels.channel(i) for i in range(len(rows))],
                                lambda step: setup["actions"][step // K], config, MAX_STEPS, is_valid,
                                on_obs=_recorder(obs))
    want = reference["obs"]
    assert sorted(obs) == sorted(want)
    for key in want:
        _assert_obs_equal(obs[key], want[key], key)
    assert [(r["active"], bool(r["complete"]), r["finish_step"], r["task_file_name"]) for r in records] == \
        [(r["active"], bool(r["complete"]), r["finish_step"], r["task_file_name"]) for r in reference["records"]]
    assert [(r["complete"], r["finish_step"]) for r in records] == [(False, 12), (False, 12), (True, 1), (True, 3)]
    if is_valid:
        assert sorted(videos) == sorted(reference["videos"])
        for name, frames in reference["videos"].items():
            assert len(videos[name]) == len(frames), name
            for a, b in zip(videos[name], frames):
                assert np.array_equal(a, b), name
    else:
        assert not videos
    if engines_before:  # the pool is persistent: a later minibatch reuses the engines
        assert len(pool.env.all_engines()) == engines_before


# ---------------------------------------------------------------------- the patch
class _Prompts:
    def __init__(self, task_ids, trial_ids, meta_info):
        import torch

        self.batch = {"task_id": torch.tensor(task_ids).view(-1, 1), "trial_id": torch.tensor(trial_ids).view(-1, 1)}
        self.non_tensor_batch = {"task_suite_name": np.array([SUITE] * len(task_ids), dtype=object)}
        self.meta_info = meta_info


class _Config(dict):
    __getattr__ = dict.__getitem__


def _stub_rob_rollout(actions, seen, videos):
    """A stand-in for SimpleVLA-RL's rob_rollout module: RobHFRollout's model side recorded."""
    module = types.ModuleType("rob_rollout_stub")

    class RobHFRollout:
        def __init__(self):
            self.config = _Config(task_suite_name=SUITE, num_steps_wait=10, action_chunks_len=K,
                                  num_images_in_input=2, experiment_name="test")
            self.max_steps = {SUITE: MAX_STEPS}
            self.module = types.SimpleNamespace(eval=lambda: None, train=lambda: None)
            self.calls = 0

        def _generate_minibatch_libero(self, prompts):
            raise AssertionError("SimpleVLA-RL's own method ran")

        def _obs_to_input(self, obs, is_robotwin=False):
            seen.append(obs)
            return {"state": R.obs_state(obs)}

        def process_input(self, inputs, task_descriptions):
            return {"n": len(inputs)}

        def _generate_one_step(self, vla_input):
            step = self.calls
            self.calls += 1
            return {"action": actions[step][:vla_input["n"]], "responses": None, "input_ids": None,
                    "attention_mask": None, "pixel_values": None}

        def _prepare_output_batch(self, vla_history, task_records, batch_size):
            return vla_history, task_records, batch_size

    module.RobHFRollout = RobHFRollout
    module.save_rollout_video = lambda images, exp, task_file, steps, complete: videos.append(
        (task_file, complete, images))
    return module


def test_patched_rollout_matches_env_worker(setup, reference, pool):
    seen, videos = [], []
    module = _stub_rob_rollout(setup["actions"], seen, videos)
    original = module.RobHFRollout._generate_minibatch_libero
    with pytest.raises(ImportError, match="SimpleVLA-RL"):
        patch_rob_hf_rollout()  # SimpleVLA-RL is not installed here
    cls = patch_rob_hf_rollout(module, resolution=FRAME, num_threads=2)
    assert patch_rob_hf_rollout(module, resolution=FRAME, num_threads=2) is cls  # idempotent
    rollout = cls()
    rollout._vlarl_env_pool = pool  # (else built on first use from the config and the options)
    try:
        for meta_info in ({"global_steps": 3}, {"n_samples": 1}):  # validation, then training
            seen.clear()
            rollout.calls = 0
            history, records, batch_size = rollout._generate_minibatch_libero(
                _Prompts([TASK, TASK], [0, 1], meta_info))
            assert batch_size == 2 and len(history) == 2 and history[1]["step"] == K
            want = [reference["obs"][(-1, 0)], reference["obs"][(-1, 1)]] + [
                reference["obs"][(s, i)] for s in (0, K) for i in (0, 1)]
            assert len(seen) == len(want)
            for i, (got, ref) in enumerate(zip(seen, want)):
                _assert_obs_equal(got, ref, i)
            assert records == reference["records"][:2]
        assert [(name, complete, len(images)) for name, complete, images in videos] == [
            (f"{SUITE}_task_{TASK}_trial_{t}", False, 1 + MAX_STEPS) for t in (0, 1)]
        for (name, _, images) in videos:
            assert all(np.array_equal(a, b) for a, b in zip(images, reference["videos"][name]))
    finally:
        unpatch_rob_hf_rollout(module)
    assert module.RobHFRollout._generate_minibatch_libero is original


# ---------------------------------------------------------------------- pieces
def test_gripper_postprocessing_and_observation_phase():
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        a = rng.uniform(-1, 1, size=(5, 8, 7)).astype(dtype)
        a[0, :4, 6] = [0.5, 0.0, 1.0, 0.49999997]
        got = postprocess_actions(a)
        want = np.array([[R.invert_gripper_action(R.normalize_gripper_action(x, binarize=True)).tolist()
                          for x in chunk] for chunk in a])
        assert got.dtype == np.float64 and np.array_equal(got, want)
        assert np.array_equal(a, a.copy())  # the input is untouched
    with pytest.raises(ValueError, match=r"\[\.\.\., 7\]"):
        postprocess_actions(np.zeros((2, 6)))
    # robosuite's observable timer after LIBERO's set_init_state: every env.step's observation
    # is sampled after substep 24 of 25 (10 settle steps + 512 policy steps).
    assert (observation_substeps(522) == 24).all()
    with pytest.raises(ValueError, match="num_steps_wait"):
        SimpleVLAEnvPool(num_steps_wait=1)


def test_native_goal_task_and_untouched_physics():
    """A goal the engine decides natively (libero_goal "turn on the stove"): success during the
    settle steps is ignored, as env_worker ignores it (complete at finish_step 1); LIBERO's own
    check agrees on the final states; and the observation detours leave the physics bit for bit
    where a plain native run of the same episode ends."""
    from vlarl_fast.envs.libero.registry import get_task
    from vlarl_fast.envs.libero.scene import LiberoScene
    from vlarl_fast.envs.libero.task_engine import LiberoTaskEngine

    task = get_task("libero_goal", 7)
    scene = LiberoScene(task)
    model = scene.robosuite_env.sim.model
    solved = task.init_states()[0].copy()
    solved[1 + model.get_joint_qpos_addr("flat_stove_1_button")] = 1.0  # the stove is on
    rng = np.random.default_rng(3)
    acts = rng.uniform(-0.6, 0.6, size=(2, 2, K, 7))
    pool = SimpleVLAEnvPool(max_steps=MAX_STEPS, resolution=32, num_threads=2,
                            scenes={("libero_goal", 7): scene})
    plain = LiberoTaskEngine(scene, 1, 1, cameras=None, max_steps=MAX_STEPS)
    try:
        init = pool.start("libero_goal", [7, 7], [0, 1], init_states=[task.init_states()[0], solved])
        assert [m["task_file_name"] for m in init] == ["libero_goal_task_7_trial_0", "libero_goal_task_7_trial_1"]
        assert pool.env.slot_engine[0].native_predicates is not None
        out = pool.step(acts[0], [0, 1])
        assert [(m["active"], m["complete"], m["finish_step"]) for m in out] == [(True, False, K), (False, True, 1)]
        out = pool.step(acts[1][:1], [0])
        assert [(m["active"], m["complete"], m["finish_step"]) for m in out] == [(False, False, MAX_STEPS)]
        with pytest.raises(ValueError, match="not active"):
            pool.step(acts[1][:1], [0])
        assert pool.env.check_success([0, 1]).tolist() == [False, True]
        plain.reset(init_states=task.init_states()[0][None])
        plain.step(postprocess_actions(acts[0][:1]), render=False)
        plain.step(postprocess_actions(acts[1][:1, :MAX_STEPS - K]), render=False)
        engine, local = pool.env.slot_engine[0], pool.env.slot_local[0]
        assert np.array_equal(engine.engine.qpos[local], plain.engine.qpos[0])
        assert np.array_equal(engine.engine.qvel[local], plain.engine.qvel[0])
    finally:
        plain.close()
        pool.close()
