"""Batched on-device preprocessing equals a per-image reference; prompt tokenisation conventions."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vlarl_fast.policy import OpenVLAOFTConfig, OpenVLAProcessor, PromptBatch, openvla_prompt
from vlarl_fast.policy.processor import ModelImages, crop_box

from .conftest import INSTRUCTIONS, make_frames


def reference_tf_crop_and_resize(image: np.ndarray, crop_scale: float) -> np.ndarray:
    """tf.image.crop_and_resize (bilinear) of one float32 HxWx3 image, written out pixel by pixel."""
    h, w, _ = image.shape
    offset, side = crop_box(crop_scale)
    y1, y2 = np.float32(offset), np.float32(offset + side)
    x1, x2 = y1, y2
    out = np.zeros_like(image)
    hs = (y2 - y1) * np.float32(h - 1) / np.float32(h - 1)
    ws = (x2 - x1) * np.float32(w - 1) / np.float32(w - 1)
    for y in range(h):
        in_y = y1 * np.float32(h - 1) + np.float32(y) * hs
        top, bottom = int(np.floor(in_y)), int(np.ceil(in_y))
        y_lerp = np.float32(in_y - np.floor(in_y))
        for x in range(w):
            in_x = x1 * np.float32(w - 1) + np.float32(x) * ws
            left, right = int(np.floor(in_x)), int(np.ceil(in_x))
            x_lerp = np.float32(in_x - np.floor(in_x))
            tl, tr = image[top, left], image[top, right]
            bl, br = image[bottom, left], image[bottom, right]
            upper = tl + (tr - tl) * x_lerp
            lower = bl + (br - bl) * x_lerp
            out[y, x] = upper + (lower - upper) * y_lerp
    return out


def reference_preprocess(frame: np.ndarray, cfg: OpenVLAOFTConfig) -> np.ndarray:
    """One HxWx3 uint8 frame -> 6xSxS, following OFT's LIBERO steps one image at a time."""
    img = frame[::-1, ::-1] if cfg.rotate_180 else frame
    size = cfg.image_size
    if img.shape[:2] != (size, size):
        t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
        t = F.interpolate(t, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
        img = t[0].permute(1, 2, 0).round().clamp(0, 255).numpy()
    x = img.astype(np.float32) / np.float32(255.0)
    if cfg.center_crop:
        x = reference_tf_crop_and_resize(img.astype(np.float32) * np.float32(1.0 / 255.0), cfg.crop_scale)
        x = np.minimum(np.floor(np.clip(x, 0, 1) * np.float32(255.5)), 255) / np.float32(255.0)
    chans = []
    for tower in cfg.vision:
        mean = np.asarray(tower.mean, dtype=np.float32)
        std = np.asarray(tower.std, dtype=np.float32)
        chans.append(((x - mean) / std).transpose(2, 0, 1))
    return np.concatenate(chans, axis=0)


@pytest.mark.parametrize("height,width", [(16, 16), (20, 26)])
@pytest.mark.parametrize("num_images", [1, 2])
def test_batched_preprocessing_equals_per_image_reference(height, width, num_images):
    cfg = OpenVLAOFTConfig.tiny(num_images=num_images, image_size=16)
    frames = make_frames(3, num_images, height, width, seed=height + num_images)
    got = OpenVLAProcessor(cfg, None).pixel_values(frames, "cpu")
    assert got.shape == (3, num_images, 6, 16, 16)
    for b in range(3):
        for i in range(num_images):
            ref = reference_preprocess(frames[b, i], cfg)
            np.testing.assert_allclose(got[b, i].numpy(), ref, rtol=0, atol=1e-5)


def test_rotation_is_180_degrees_and_crop_scale_one_is_identity():
    cfg = OpenVLAOFTConfig.tiny().replace(center_crop=True, crop_scale=1.0, rotate_180=True)
    frames = make_frames(2, 1, 16, 16, seed=3)
    rotated = OpenVLAProcessor(cfg, None).pixel_values(frames, "cpu")
    upright = OpenVLAProcessor(cfg.replace(rotate_180=False), None).pixel_values(np.ascontiguousarray(frames[:, :, ::-1, ::-1]), "cpu")
    torch.testing.assert_close(rotated, upright, rtol=0, atol=0)
    # full-box crop reproduces the pixels: channel 3..5 are SigLIP-normalised, (v/255 - .5)/.5
    expected = torch.from_numpy(frames[:, 0, ::-1, ::-1].copy()).permute(0, 3, 1, 2).float() / 255.0 * 2 - 1
    torch.testing.assert_close(rotated[:, 0, 3:], expected, rtol=0, atol=1e-6)


def test_center_crop_zooms_in():
    cfg = OpenVLAOFTConfig.tiny().replace(rotate_180=False)
    ramp = np.tile(np.arange(16, dtype=np.uint8)[None, :, None] * 16, (16, 1, 3))[None, None]
    got = OpenVLAProcessor(cfg, None).pixel_values(ramp, "cpu")[0, 0, 3]
    row = (got[0] + 1) / 2 * 255
    # the crop spans sqrt(0.9) of the width: the ramp's slope grows by 1/sqrt(0.9), ends move inwards
    assert float(row[0]) > 0 and float(row[-1]) < 240
    slope = float((row[-1] - row[0]) / 15)
    assert slope == pytest.approx(16 * np.sqrt(0.9), rel=0.02)


def test_image_validation_errors():
    proc = OpenVLAProcessor(OpenVLAOFTConfig.tiny(), None)
    with pytest.raises(TypeError, match="uint8"):
        proc.pixel_values(np.zeros((1, 1, 16, 16, 3), dtype=np.float32), "cpu")
    with pytest.raises(ValueError, match=r"\[B, 1, H, W, 3\].*\(1, 2, 16, 16, 3\)"):
        proc.pixel_values(np.zeros((1, 2, 16, 16, 3), dtype=np.uint8), "cpu")


def test_prompt_tokenisation_follows_llama2_openvla_conventions(tiny_tokenizer):
    cfg = OpenVLAOFTConfig.tiny()
    batch = OpenVLAProcessor(cfg, tiny_tokenizer).prompts(INSTRUCTIONS, "cpu")
    assert isinstance(batch, PromptBatch)
    ids, mask = batch.input_ids, batch.attention_mask
    lengths = mask.sum(1)
    assert int(lengths.max()) == ids.shape[1] and len(set(lengths.tolist())) == 3
    for row, text in enumerate(INSTRUCTIONS):
        n = int(lengths[row])
        assert torch.all(ids[row, : ids.shape[1] - n] == cfg.pad_token_id)  # left padding
        assert not mask[row, : ids.shape[1] - n].any() and mask[row, ids.shape[1] - n :].all()
        body = ids[row, ids.shape[1] - n :].tolist()
        assert body[-1] == cfg.empty_token_id and cfg.bos_token_id not in body
        full = tiny_tokenizer.tokenizer.encode(openvla_prompt(text)).ids
        assert full[0] == cfg.bos_token_id and full[1:] + [cfg.empty_token_id] == body
        assert tiny_tokenizer.tokenizer.decode(full) == f"In: What action should the robot take to {text.lower()}?\nOut:"


def test_sentencepiece_only_checkpoint_tokenizer(tmp_path):
    import io

    import sentencepiece as spm

    from vlarl_fast.policy import PromptTokenizer

    corpus = [openvla_prompt(t) for t in INSTRUCTIONS] * 20
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_writer=model, vocab_size=300, model_type="bpe",
                                   byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
                                   minloglevel=2, hard_vocab_limit=False)
    (tmp_path / "tokenizer.model").write_bytes(model.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    empty = sp.piece_to_id("\u2581")
    tok = PromptTokenizer.from_dir(tmp_path, bos_token_id=1, empty_token_id=empty, pad_token_id=300)
    bodies = tok.encode_prompt_bodies(INSTRUCTIONS[:2])
    for text, body in zip(INSTRUCTIONS, bodies):
        expected = sp.encode(openvla_prompt(text))
        assert body == (expected if expected[-1] == empty else expected + [empty])
        assert sp.decode(body).startswith("In: What action should the robot take to")
    tok.save(tmp_path / "saved")
    assert (tmp_path / "saved" / "tokenizer.model").read_bytes() == model.getvalue()


def test_numpy_and_torch_frames_give_the_same_pixels():
    cfg = OpenVLAOFTConfig.tiny(num_images=2)
    frames = make_frames(2, 2, 24, 20, seed=21)
    proc = OpenVLAProcessor(cfg, None)
    from_numpy = proc.pixel_values(frames, "cpu")
    from_torch = proc.pixel_values(torch.from_numpy(frames), "cpu")
    strided = proc.pixel_values(np.ascontiguousarray(frames[:, :, ::-1])[:, :, ::-1], "cpu")  # non-contiguous view
    assert torch.equal(from_numpy, from_torch) and torch.equal(from_numpy, strided)


@pytest.mark.parametrize("pipeline", ["resize", "simplevla"])
def test_model_images_give_the_same_pixels_as_the_frames(pipeline):
    """What the rollout keeps (`ModelImages`, the frames after the image pipeline) gives the update
    exactly the pixels the rollout sampled from, without running the pipeline again."""
    cfg = OpenVLAOFTConfig.tiny(num_images=2).replace(image_pipeline=pipeline, center_crop=True)
    proc = OpenVLAProcessor(cfg, None)
    frames = make_frames(3, 2, 40, 40, seed=5)
    levels = proc.model_images(frames, "cpu")
    assert levels.dtype == torch.uint8 and tuple(levels.shape) == (3, 2, cfg.image_size, cfg.image_size, 3)
    assert torch.equal(proc.pixel_values(ModelImages(levels), "cpu"), proc.pixel_values(frames, "cpu"))


def test_model_images_validation_errors():
    cfg = OpenVLAOFTConfig.tiny()
    proc = OpenVLAProcessor(cfg, None)
    s = cfg.image_size
    with pytest.raises(ValueError, match=rf"\[B, 1, {s}, {s}, 3\].*\(2, 1, {s + 1}, {s + 1}, 3\)"):
        proc.pixel_values(ModelImages(torch.zeros(2, 1, s + 1, s + 1, 3, dtype=torch.uint8)), "cpu")
    with pytest.raises(TypeError, match="uint8"):
        proc.pixel_values(ModelImages(torch.zeros(2, 1, s, s, 3)), "cpu")
