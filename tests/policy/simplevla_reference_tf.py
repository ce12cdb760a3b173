"""SimpleVLA-RL's LIBERO model input, restated with the libraries it calls (TensorFlow, PIL, torch).

Sources (PRIME-RL/SimpleVLA-RL): `verl/utils/libero_utils.py` (`get_libero_image`,
`get_libero_wrist_image`, `resize_image`), `verl/workers/rollout/rob_rollout.py` (`_obs_to_input`,
`process_input`, `crop_and_resize`, `center_crop_image`) and OpenVLA's `processing_prismatic.py`
(`PrismaticImageProcessor.apply_transform`: torchvision's functional resize / center_crop / to_tensor /
normalize on PIL images, restated here with PIL and torch because torchvision does not import on
CPU-only torch wheels; at 224 px the resize and the crop return the image unchanged).

TensorFlow must not share a process with triton or Mesa's llvmpipe (their LLVM copies abort or
crash the process), so the tests run this file as a child process:

    python simplevla_reference_tf.py IN.npz OUT.npz

IN holds `raw`: uint8 `[B, n, H, W, 3]` frames in LIBERO's render orientation (`obs["agentview_image"]`,
then `obs["robot0_eye_in_hand_image"]` when n = 2). OUT holds `pixel_values` `[B, n, 6, 224, 224]`
float32 and each step's output: `rotated`, `jpeg` (decoded), `lanczos` (float32), `resized` (uint8),
`cropped` (uint8 after `center_crop_image`). With `--measure`, OUT also holds the JPEG round trip of
PIL and OpenCV at TensorFlow's settings and the host time per frame of each codec.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import tensorflow as tf
import torch
from PIL import Image

IMAGE_SIZE = 224
MEANS = [[0.485, 0.456, 0.406], [0.5, 0.5, 0.5]]  # OpenVLA preprocessor_config.json (DINOv2, SigLIP)
STDS = [[0.229, 0.224, 0.225], [0.5, 0.5, 0.5]]


# ---- libero_utils.py ------------------------------------------------------------------------------
def resize_image(img, resize_size):
    assert isinstance(resize_size, tuple)
    img = tf.image.encode_jpeg(img)  # Encode as JPEG, as done in RLDS dataset builder
    img = tf.io.decode_image(img, expand_animations=False, dtype=tf.uint8)  # Immediately decode back
    img = tf.image.resize(img, resize_size, method="lanczos3", antialias=True)
    img = tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)
    img = img.numpy()
    return img


def get_libero_image(obs, resize_size):
    if isinstance(resize_size, int):
        resize_size = (resize_size, resize_size)
    img = obs["agentview_image"]
    img = img[::-1, ::-1]  # IMPORTANT: rotate 180 degrees to match train preprocessing
    img = resize_image(img, resize_size)
    return img


def get_libero_wrist_image(obs, resize_size):
    if isinstance(resize_size, int):
        resize_size = (resize_size, resize_size)
    img = obs["robot0_eye_in_hand_image"]
    img = img[::-1, ::-1]  # IMPORTANT: rotate 180 degrees to match train preprocessing
    img = resize_image(img, resize_size)
    return img


# ---- rob_rollout.py -------------------------------------------------------------------------------
def crop_and_resize(image, crop_scale, batch_size):
    assert image.shape.ndims == 3 or image.shape.ndims == 4
    expanded_dims = False
    if image.shape.ndims == 3:
        image = tf.expand_dims(image, axis=0)
        expanded_dims = True
    new_heights = tf.reshape(tf.clip_by_value(tf.sqrt(crop_scale), 0, 1), shape=(batch_size,))
    new_widths = tf.reshape(tf.clip_by_value(tf.sqrt(crop_scale), 0, 1), shape=(batch_size,))
    height_offsets = (1 - new_heights) / 2
    width_offsets = (1 - new_widths) / 2
    bounding_boxes = tf.stack(
        [height_offsets, width_offsets, height_offsets + new_heights, width_offsets + new_widths], axis=1)
    image = tf.image.crop_and_resize(image, bounding_boxes, tf.range(batch_size), (224, 224))
    if expanded_dims:
        image = image[0]
    return image


def center_crop_image(image):
    batch_size = 1
    crop_scale = 0.9
    image = tf.convert_to_tensor(np.array(image))
    orig_dtype = image.dtype
    image = tf.image.convert_image_dtype(image, tf.float32)
    image = crop_and_resize(image, crop_scale, batch_size)
    image = tf.clip_by_value(image, 0, 1)
    image = tf.image.convert_image_dtype(image, orig_dtype, saturate=True)
    image = Image.fromarray(image.numpy())
    image = image.convert("RGB")
    return image


def obs_to_input(obs, num_images_in_input):
    """`_obs_to_input` for LIBERO (the state is not used by the LIBERO path of process_input)."""
    if num_images_in_input > 1:
        return {"full_image": get_libero_image(obs, 224), "wrist_image": get_libero_wrist_image(obs, 224)}
    return {"full_image": get_libero_image(obs, 224)}


# ---- processing_prismatic.py (PrismaticImageProcessor, resize-naive, crop_pct 1.0) ----------------
def apply_transform(img: Image.Image) -> torch.Tensor:
    imgs_t = []
    for idx in range(2):
        img_idx = img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC)  # TVF.resize on PIL (size unchanged)
        img_idx = img_idx.crop((0, 0, IMAGE_SIZE, IMAGE_SIZE))  # TVF.center_crop(224) of a 224 image
        img_idx_t = torch.from_numpy(np.array(img_idx, np.uint8, copy=True)).permute(2, 0, 1).contiguous()
        img_idx_t = img_idx_t.to(dtype=torch.get_default_dtype()).div(255)  # TVF.to_tensor
        mean = torch.as_tensor(MEANS[idx], dtype=img_idx_t.dtype).view(-1, 1, 1)  # TVF.normalize
        std = torch.as_tensor(STDS[idx], dtype=img_idx_t.dtype).view(-1, 1, 1)
        img_idx_t = img_idx_t.clone().sub_(mean).div_(std)
        imgs_t.append(img_idx_t)
    return torch.vstack(imgs_t)


def process_images(input_data, center_crop=True):
    """The image half of `process_input` for one sample: [1, 6 * n, 224, 224]."""
    image = Image.fromarray(input_data["full_image"]).convert("RGB")
    if center_crop:
        image = center_crop_image(image)
    pixel_values_list = [torch.stack([apply_transform(image.convert("RGB"))])]
    if "wrist_image" in input_data:
        wrist_image = Image.fromarray(input_data["wrist_image"]).convert("RGB")
        if center_crop:
            wrist_image = center_crop_image(wrist_image)
        pixel_values_list.append(torch.stack([apply_transform(wrist_image.convert("RGB"))]))
    return torch.cat(pixel_values_list, dim=1)


# ---- driver -----------------------------------------------------------------------------------------
_KEYS = ("agentview_image", "robot0_eye_in_hand_image")


def reference(raw: np.ndarray) -> dict[str, np.ndarray]:
    b, n = raw.shape[:2]
    out = {name: [] for name in ("rotated", "jpeg", "lanczos", "resized", "cropped")}
    pixel_values = []
    for i in range(b):
        obs = {_KEYS[k]: raw[i, k] for k in range(n)}
        pixel_values.append(process_images(obs_to_input(obs, n)).numpy().reshape(n, 6, IMAGE_SIZE, IMAGE_SIZE))
        for k in range(n):  # the same steps one by one, for per-step comparisons
            rotated = raw[i, k][::-1, ::-1]
            jpeg = tf.io.decode_image(tf.image.encode_jpeg(rotated), expand_animations=False, dtype=tf.uint8)
            lanczos = tf.image.resize(jpeg, (IMAGE_SIZE, IMAGE_SIZE), method="lanczos3", antialias=True)
            resized = tf.cast(tf.clip_by_value(tf.round(lanczos), 0, 255), tf.uint8).numpy()
            assert np.array_equal(resized, resize_image(rotated, (IMAGE_SIZE, IMAGE_SIZE)))
            for name, value in (("rotated", rotated), ("jpeg", jpeg.numpy()), ("lanczos", lanczos.numpy()),
                                ("resized", resized), ("cropped", np.asarray(center_crop_image(Image.fromarray(resized))))):
                out[name].append(value)
    result = {name: np.stack(values).reshape(b, n, *values[0].shape) for name, values in out.items()}
    result["pixel_values"] = np.stack(pixel_values)
    return result


def measure(raw: np.ndarray) -> dict[str, np.ndarray]:
    """JPEG round trips of PIL and OpenCV at TensorFlow's settings (quality 95, 4:2:0) and timings."""
    import io

    import cv2

    frames = np.ascontiguousarray(raw[:, :, ::-1, ::-1]).reshape(-1, *raw.shape[2:])

    def pil(img):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=95, subsampling="4:2:0")
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))

    def opencv(img):
        ok, enc = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        return cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1]

    def tensorflow(img):
        return tf.io.decode_image(tf.image.encode_jpeg(img), expand_animations=False, dtype=tf.uint8).numpy()

    out = {}
    for name, fn in (("tf", tensorflow), ("pil", pil), ("cv2", opencv)):
        decoded = np.stack([fn(f) for f in frames])
        repeats = max(1, 200 // len(frames))
        start = time.perf_counter()
        for _ in range(repeats):
            for f in frames:
                fn(f)
        out[f"jpeg_{name}"] = decoded.reshape(raw.shape)
        out[f"jpeg_{name}_ms"] = np.float64((time.perf_counter() - start) * 1e3 / (repeats * len(frames)))
    return out


def main(argv: list[str]) -> None:
    args = [a for a in argv if not a.startswith("--")]
    raw = np.load(args[0])["raw"]
    result = reference(raw)
    if "--measure" in argv:
        result.update(measure(raw))
    np.savez(args[1], **result)


if __name__ == "__main__":
    main(sys.argv[1:])
