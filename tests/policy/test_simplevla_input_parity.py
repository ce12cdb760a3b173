"""What the policy sees against what SimpleVLA-RL's policy sees on LIBERO, bit for bit.

* Images: our processor (official checkpoint config: `image_pipeline="simplevla"`, `rotate_180=False`)
  on the native engine's frames (`image_convention="openvla"`), against SimpleVLA-RL's own code
  (`get_libero_image` / `resize_image` with TensorFlow, `center_crop_image`, the Prismatic
  processor; `simplevla_reference_tf.py`, run as a child process) on LIBERO's `OffScreenRenderEnv`
  renders of the same state. Every step (rotation, JPEG round trip, lanczos3 float output, uint8
  resize, centre crop) and the final `pixel_values` are compared with tolerance 0. Frames: the
  settled first frame (agentview + wrist) of task 0 of each main suite, and synthetic frames
  (noise, gradients, saturated 8x8 blocks: the inputs that overflow libjpeg-turbo's 16-bit IDCT).
* The engine's frames equal LIBERO's renders rotated by 180 degrees, exactly. LIBERO's observation
  (`obs["agentview_image"]`, what SimpleVLA-RL feeds) is sampled one physics substep before the
  end of the step (docs/libero.md), so it differs from both on a small fraction of pixels: measured
  and bounded here.
* Prompt ids: ours against `LlamaTokenizer(Fast)(prompt).input_ids` + 29871 (SimpleVLA-RL's
  `process_input`), with a SentencePiece model trained here (Llama-2's vocabulary is not available
  offline).
* Actions: our detokenisation, un-normalisation and LIBERO gripper step against SimpleVLA-RL's
  numpy code (`_verl_discrete_prediction`, `_unnormalize_actions`, `normalize_gripper_action`,
  `invert_gripper_action`) on random action tokens.

Run `python -m tests.policy.test_simplevla_input_parity` for the measurements of docs/policy.md.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

from vlarl_fast.policy import OpenVLAOFTConfig, OpenVLAProcessor, PromptTokenizer, openvla_prompt
from vlarl_fast.policy.action_tokenizer import ActionDetokenizer, resolve_unnorm_key
from vlarl_fast.policy.simplevla_images import jpeg_roundtrip, resize_lanczos3, simplevla_resize

REPO = Path(__file__).resolve().parents[2]
REFERENCE = Path(__file__).with_name("simplevla_reference_tf.py")
SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10")
CAMERAS = ("agentview", "robot0_eye_in_hand")
FRAME = 256  # SimpleVLA-RL's get_libero_env(resolution=256)
STEPS = ("rotated", "jpeg", "lanczos", "resized", "cropped", "pixel_values")


# ---- SimpleVLA-RL's reference (TensorFlow in a child process) -------------------------------------
@lru_cache(maxsize=1)
def _tensorflow_missing() -> str | None:
    probe = subprocess.run([sys.executable, "-c", "import tensorflow, PIL"], capture_output=True, text=True,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if probe.returncode == 0:
        return None
    return "import tensorflow failed: " + (probe.stderr.strip().splitlines() or ["?"])[-1]


def run_reference(raw: np.ndarray, measure: bool = False) -> dict[str, np.ndarray]:
    """SimpleVLA-RL's model input for raw LIBERO-orientation frames `[B, n, H, W, 3]`."""
    reason = _tensorflow_missing()
    if reason:
        pytest.skip(reason)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, raw=raw)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        cmd = [sys.executable, str(REFERENCE), str(src), str(dst)] + (["--measure"] if measure else [])
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        assert done.returncode == 0, f"reference failed:\n{done.stderr[-3000:]}"
        with np.load(dst) as out:
            return {k: out[k] for k in out.files}


def our_steps(frames: np.ndarray, num_images: int, rotate_180: bool = False) -> dict[str, np.ndarray]:
    """Our pipeline on `[B, n, H, W, 3]` frames, step by step, for an official checkpoint's config."""
    cfg = OpenVLAOFTConfig.openvla_7b(num_images=num_images).replace(rotate_180=rotate_180)
    proc = OpenVLAProcessor(cfg, None)
    b, n, h, w, _ = frames.shape
    x = torch.from_numpy(np.ascontiguousarray(frames)).reshape(b * n, h, w, 3)
    if rotate_180:
        x = x.flip(1, 2)
    jpeg = jpeg_roundtrip(x)
    lanczos = resize_lanczos3(jpeg, (224, 224))
    steps = {"rotated": x, "jpeg": jpeg, "lanczos": lanczos, "resized": simplevla_resize(x, 224)}
    out = {k: v.reshape(b, n, *v.shape[1:]).numpy() for k, v in steps.items()}
    out["cropped"] = proc.model_images(frames, "cpu").numpy()
    out["pixel_values"] = proc.pixel_values(frames, "cpu").numpy()
    return out


def difference(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(max abs difference, fraction of differing values)."""
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    delta = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    return float(delta.max()), float((delta > 0).mean())


def assert_identical(ours: dict, ref: dict) -> None:
    diffs = {k: difference(ours[k], ref[k]) for k in STEPS}
    assert all(d == (0.0, 0.0) for d in diffs.values()), f"(max abs, fraction) per step: {diffs}"
    assert ours["pixel_values"].dtype == ref["pixel_values"].dtype == np.float32


# ---- frames -----------------------------------------------------------------------------------------
def synthetic_frames(size: int = FRAME, seed: int = 0) -> np.ndarray:
    """[4, 2, size, size, 3]: uniform noise, smooth gradients, saturated 8x8 colour blocks, stripes."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, size)
    smooth = np.stack([np.outer(np.sin(6 * t), np.cos(4 * t)), np.outer(t, t), np.outer(np.cos(9 * t), t)], -1)
    blocks = rng.integers(0, 2, (size // 8 + 1, size // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)[:size, :size] * 255
    stripes = (rng.integers(0, 2, (size, 1, 3)) ^ rng.integers(0, 2, (1, size, 3))) * 255
    frames = [rng.integers(0, 256, (size, size, 3)), smooth * 127 + 128, blocks, stripes,
              rng.integers(0, 256, (size, size, 3)) // 2 + 64, 255 - smooth * 100 - 100, 255 - blocks, stripes // 3]
    return np.stack(frames).astype(np.uint8).reshape(4, 2, size, size, 3)


def render_libero_frames(suites=SUITES) -> dict[str, np.ndarray]:
    """Per suite (task 0, init state 0, after the settle steps): the engine's frames (openvla
    convention), LIBERO's renders of the same state, LIBERO's observation images: each
    `[len(suites), 2, FRAME, FRAME, 3]` (agentview, wrist); and the instructions."""
    os.environ.setdefault("VLARL_LIBERO_ASSETS", str(REPO.parent / "shared" / "libero_assets"))
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    if "LIBERO_CONFIG_PATH" not in os.environ:
        os.environ["LIBERO_CONFIG_PATH"] = tempfile.mkdtemp(prefix="vlarl_libero_cfg_")
    from vlarl_fast.envs.libero.config import import_libero

    try:
        import_libero()
    except Exception as exc:  # LiberoNotFoundError, missing assets or dependencies
        pytest.skip(f"LIBERO is not available: {exc}")
    from vlarl_fast.envs.libero.registry import NOOP_ACTION, SETTLE_STEPS, get_task
    from vlarl_fast.envs.libero.scene import LiberoScene, make_libero_env
    from vlarl_fast.envs.libero.task_engine import LiberoTaskEngine

    out = {"engine": [], "render": [], "obs": [], "instructions": []}
    for suite in suites:
        task = get_task(suite, 0)
        scene = LiberoScene(task)
        try:
            eng = LiberoTaskEngine(scene, num_envs=1, num_threads=1, cameras=CAMERAS, height=FRAME, width=FRAME,
                                   image_convention="openvla")
            try:
                out["engine"].append(np.array(eng.reset(init_state_ids=[0])[0]))
            finally:
                eng.close()
        finally:
            scene.close()
        ref = make_libero_env(task, cameras=CAMERAS, height=FRAME, width=FRAME)
        try:  # SimpleVLA-RL's env_worker: seed(0), reset, set_init_state, num_steps_wait no-ops
            ref.seed(0)
            ref.reset()
            obs = ref.set_init_state(task.init_states()[0])
            for _ in range(SETTLE_STEPS):
                obs, _, _, _ = ref.step(NOOP_ACTION)
            out["render"].append(np.stack([ref.env.sim.render(camera_name=c, height=FRAME, width=FRAME) for c in CAMERAS]))
            out["obs"].append(np.stack([obs[f"{c}_image"] for c in CAMERAS]))
        finally:
            ref.close()
        out["instructions"].append(task.instruction)
    return {k: (v if k == "instructions" else np.stack(v)) for k, v in out.items()}


@pytest.fixture(scope="module")
def libero_frames():
    return render_libero_frames()


@pytest.fixture(scope="module")
def libero_reference(libero_frames):
    return run_reference(libero_frames["render"])


# ---- images -----------------------------------------------------------------------------------------
def test_engine_frames_are_libero_renders_rotated(libero_frames):
    engine, render, obs = libero_frames["engine"], libero_frames["render"], libero_frames["obs"]
    assert engine.shape == (len(SUITES), 2, FRAME, FRAME, 3) and engine.dtype == np.uint8
    assert np.array_equal(engine, render[:, :, ::-1, ::-1])
    # The observation LIBERO returns is rendered one physics substep before the step ends: measured
    # <= 9% of pixels (wrist camera, which moves with the arm), 0.4% for agentview; max 54 levels.
    moved = (engine != obs[:, :, ::-1, ::-1]).any(-1).mean(axis=(2, 3))
    assert moved.max() < 0.15 and moved[:, 0].max() < 0.02, moved


@pytest.mark.parametrize("num_images", [1, 2])
def test_official_checkpoint_input_equals_simplevla_on_libero_frames(libero_frames, libero_reference, num_images):
    ours = our_steps(libero_frames["engine"][:, :num_images], num_images)
    ref = {k: v[:, :num_images] for k, v in libero_reference.items()}
    assert_identical(ours, ref)


def test_raw_frames_need_rotate_180_and_engine_frames_must_not_be_rotated(libero_frames, libero_reference):
    raw = libero_frames["render"]
    assert_identical(our_steps(raw, 2, rotate_180=True), libero_reference)
    # The bug this replaces: engine frames (already rotated) rotated a second time.
    twice = our_steps(libero_frames["engine"], 2, rotate_180=True)["pixel_values"]
    assert difference(twice, libero_reference["pixel_values"])[1] > 0.9  # measured 0.99


def test_official_checkpoint_input_equals_simplevla_on_synthetic_frames():
    frames = synthetic_frames()
    ref = run_reference(np.ascontiguousarray(frames[:, :, ::-1, ::-1]))
    assert_identical(our_steps(frames, 2), ref)


@pytest.mark.parametrize("size", [224, 100])
def test_other_frame_sizes_follow_the_same_pipeline(size):
    """224 px: JPEG round trip, then lanczos3 at scale 1 (not skipped by TF); 100 px: upsampling."""
    frames = synthetic_frames(size, seed=size)[:2]
    ref = run_reference(np.ascontiguousarray(frames[:, :, ::-1, ::-1]))
    assert_identical(our_steps(frames, 2), ref)


def test_pipeline_is_batch_independent():
    """The pipeline is batch-independent: one call on the whole batch equals per-frame calls."""
    frames = torch.from_numpy(synthetic_frames(64, seed=3).reshape(-1, 64, 64, 3))
    whole = simplevla_resize(frames, 224)
    single = torch.cat([simplevla_resize(f[None], 224) for f in frames])
    assert torch.equal(whole, single)


# ---- prompt ids --------------------------------------------------------------------------------------
LIBERO_INSTRUCTIONS = [
    "pick up the black bowl between the plate and the ramekin and place it on the plate",
    "pick up the alphabet soup and place it in the basket",
    "open the middle drawer of the cabinet",
    "put both the alphabet soup and the tomato sauce in the basket",
    "Turn on the stove and put the moka pot on it",
]


def _train_llama_style_spm(directory: Path) -> Path:
    import sentencepiece as spm

    corpus = [openvla_prompt(t) for t in LIBERO_INSTRUCTIONS] * 30 + ["pick place put open close turn bowl plate 0 1 2 3"] * 10
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_writer=model, vocab_size=400, model_type="bpe",
                                   byte_fallback=True, character_coverage=1.0, split_digits=True,
                                   normalization_rule_name="identity", remove_extra_whitespaces=False,
                                   allow_whitespace_only_pieces=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
                                   minloglevel=2, hard_vocab_limit=False)
    path = directory / "tokenizer.model"
    path.write_bytes(model.getvalue())
    return path


def test_prompt_ids_equal_llama_tokenizer_ids_plus_empty_token(tmp_path):
    """Both readers of a checkpoint's tokenizer: `tokenizer.json` (what OFT checkpoints ship, here
    written by transformers' LlamaTokenizer from the SentencePiece model, add_bos_token as in
    OpenVLA's tokenizer_config) and `tokenizer.model` alone (Llama's slow tokenizer: BOS + pieces)."""
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    model_file = _train_llama_style_spm(tmp_path)
    hf = LlamaTokenizer.from_pretrained(str(tmp_path), legacy=False, add_bos_token=True)
    (tmp_path / "json").mkdir()
    hf.backend_tokenizer.save(str(tmp_path / "json" / "tokenizer.json"))
    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    empty = hf.convert_tokens_to_ids("\u2581")  # Llama-2: 29871
    assert empty == sp.piece_to_id("\u2581") and hf.bos_token_id == sp.bos_id() == 1
    texts = LIBERO_INSTRUCTIONS + ["pick up the black bowl", "Open the top drawer"]
    references = {
        "json": lambda prompt: hf(prompt)["input_ids"],  # PrismaticProcessor: tokenizer(text) with BOS
        ".": lambda prompt: [sp.bos_id()] + sp.encode(prompt),
    }
    for sub, tokenize in references.items():
        ours = PromptTokenizer.from_dir(tmp_path / sub, bos_token_id=1, empty_token_id=empty, pad_token_id=len(hf))
        for text, body in zip(texts, ours.encode_prompt_bodies(texts)):
            input_ids = tokenize(openvla_prompt(text))
            if input_ids[-1] != empty:  # rob_rollout.process_input appends 29871
                input_ids = input_ids + [empty]
            assert [1] + body == input_ids, (sub, text)


# ---- actions ------------------------------------------------------------------------------------------
def _libero_stats(rng) -> dict:
    q01 = rng.uniform(-1.0, -0.05, 7)
    q99 = rng.uniform(0.05, 1.0, 7)
    q01[-1], q99[-1] = 0.0, 1.0
    entry = {"action": {"q01": q01.tolist(), "q99": q99.tolist(), "mask": [True] * 6 + [False],
                        "min": (q01 - 0.1).tolist(), "max": (q99 + 0.1).tolist()}}
    return {"libero_spatial_no_noops": entry, "libero_10": {"action": {**entry["action"], "q01": (q01 * 2).tolist()}}}


def simplevla_actions(token_ids: np.ndarray, norm_stats: dict, unnorm_key: str, vocab_size: int = 32000) -> np.ndarray:
    """modeling_prismatic `_verl_discrete_prediction` + `_unnormalize_actions` (BOUNDS_Q99), then
    env_worker's `normalize_gripper_action(a, binarize=True)` / `invert_gripper_action` per action."""
    bins = np.linspace(-1, 1, 256)
    bin_centers = (bins[:-1] + bins[1:]) / 2.0
    discretized_actions = vocab_size - token_ids
    discretized_actions = np.clip(discretized_actions - 1, a_min=0, a_max=bin_centers.shape[0] - 1)
    normalized_actions = bin_centers[discretized_actions].reshape(-1, 7)
    stats = norm_stats[unnorm_key]["action"]
    mask = stats.get("mask", np.ones_like(stats["q01"], dtype=bool))
    action_high, action_low = np.array(stats["q99"]), np.array(stats["q01"])
    actions = np.where(mask, 0.5 * (normalized_actions + 1) * (action_high - action_low + 1e-8) + action_low, normalized_actions)
    actions = actions.reshape(-1, 8, 7)
    out = np.empty_like(actions)
    for i in range(actions.shape[0]):
        for j in range(actions.shape[1]):
            a = actions[i, j].copy()
            a[..., -1] = 2 * (a[..., -1] - 0.0) / (1.0 - 0.0) - 1  # normalize_gripper_action
            a[..., -1] = np.sign(a[..., -1])
            a[..., -1] = a[..., -1] * -1.0  # invert_gripper_action
            out[i, j] = a
    return out


@pytest.mark.parametrize("suite,key", [("libero_spatial", "libero_spatial_no_noops"), ("libero_10", "libero_10")])
def test_actions_equal_simplevla_unnormalisation_and_gripper(suite, key):
    rng = np.random.default_rng(7)
    stats = _libero_stats(rng)
    assert resolve_unnorm_key(stats, suite) == key  # vla_preprocess: suite, else suite_no_noops
    bins = np.concatenate([np.arange(256), rng.integers(0, 256, 64 * 56 - 256)]).reshape(64, 56)
    token_ids = 32000 - 256 + bins  # what the LM head's bin slice [-320:-64] samples
    ours = ActionDetokenizer(256, 8, 7, "libero").decode(torch.from_numpy(bins), stats[key]["action"])
    theirs = simplevla_actions(token_ids, stats, key)
    assert ours.dtype == torch.float32 and ours.shape == (64, 8, 7)
    assert np.array_equal(ours.numpy(), theirs.astype(np.float32))
    assert set(np.unique(theirs[..., -1])) == {-1.0, 1.0}


# ---- measurements for docs/policy.md -------------------------------------------------------------------
def old_crop_box(crop_scale: float) -> tuple[float, float]:
    """The crop box before this file existed: sqrt in double, then float32."""
    side = np.float32(min(max(float(np.sqrt(crop_scale)), 0.0), 1.0))
    return float((np.float32(1.0) - side) / np.float32(2.0)), float(side)


def main() -> None:
    import torch.nn.functional as F

    from vlarl_fast.policy import processor
    from vlarl_fast.policy.processor import center_crop_resize

    frames = render_libero_frames()
    engine = frames["engine"]
    raw = np.concatenate([frames["render"], np.ascontiguousarray(synthetic_frames()[:, :, ::-1, ::-1])])
    ref = run_reference(raw, measure=True)
    ours = our_steps(np.concatenate([engine, synthetic_frames()]), 2)
    n_libero = len(engine)
    print("test frames:", n_libero * 2, "LIBERO renders (4 suites x agentview, wrist) +", raw.shape[0] * 2 - n_libero * 2, "synthetic")
    for part, sl in (("libero", slice(0, n_libero)), ("synthetic", slice(n_libero, None))):
        for k in STEPS:
            print(f"  ours vs SimpleVLA-RL {part:9s} {k:12s} max abs, fraction: {difference(ours[k][sl], ref[k][sl])}")
        for codec in ("pil", "cv2"):
            print(f"  {codec} JPEG vs TF {part:9s}: {difference(ref['jpeg_' + codec][sl], ref['jpeg'][sl])}")
        rot = torch.from_numpy(ref["rotated"][sl].reshape(-1, FRAME, FRAME, 3))
        bicubic = F.interpolate(rot.permute(0, 3, 1, 2).float(), size=(224, 224), mode="bicubic", align_corners=False,
                                antialias=True).round().clamp(0, 255).permute(0, 2, 3, 1).numpy()
        print(f"  old path (no JPEG, bicubic) vs TF resize {part}: {difference(bicubic, ref['resized'][sl].reshape(bicubic.shape))}")
        lanczos_no_jpeg = resize_lanczos3(rot, (224, 224)).round().clamp(0, 255).numpy()
        print(f"  lanczos3 without JPEG vs TF resize {part}: {difference(lanczos_no_jpeg, ref['resized'][sl].reshape(bicubic.shape))}")
        resized = torch.from_numpy(ref["resized"][sl].reshape(-1, 224, 224, 3)).permute(0, 3, 1, 2).float()
        target = ref["cropped"][sl].reshape(-1, 224, 224, 3)

        def crop(scaled):
            return torch.floor(center_crop_resize(scaled, 0.9).clamp(0, 1) * 255.5).permute(0, 2, 3, 1).numpy()

        print(f"  crop of x/255 instead of x*float32(1/255), {part}: {difference(crop(resized / 255.0), target)}")
        saved = processor.crop_box
        processor.crop_box = old_crop_box
        try:
            print(f"  crop box float32(sqrt(0.9 double)) instead of sqrt(float32(0.9)), {part}: "
                  f"{difference(crop(resized * float(np.float32(1 / 255))), target)}")
            print(f"  previous crop (both), {part}: {difference(crop(resized / 255.0), target)}")
        finally:
            processor.crop_box = saved
    for codec in ("tf", "pil", "cv2"):
        print(f"  host JPEG round trip {codec}: {float(ref[f'jpeg_{codec}_ms']):.2f} ms per 256x256 frame")
    x = torch.from_numpy(engine.reshape(-1, FRAME, FRAME, 3))
    for threads in (1, 2):
        torch.set_num_threads(threads)
        jpeg_roundtrip(x)
        start = time.perf_counter()
        for _ in range(3):
            jpeg_roundtrip(x)
        t_jpeg = (time.perf_counter() - start) / (3 * len(x)) * 1e3
        start = time.perf_counter()
        for _ in range(3):
            simplevla_resize(x, 224)
        t_all = (time.perf_counter() - start) / (3 * len(x)) * 1e3
        print(f"  torch CPU, {threads} thread(s), batch {len(x)}: jpeg_roundtrip {t_jpeg:.2f} ms/frame, simplevla_resize {t_all:.2f} ms/frame")


if __name__ == "__main__":
    main()
