"""Offscreen rendering inside the engine's worker threads (one EGL context per thread).

Cameras are chosen when the engine is built::

    engine = Engine(model, num_envs=8, cameras=["agentview", "robot0_eye_in_hand"],
                    height=256, width=256)            # image_convention="mujoco", fast=False
    frames = engine.render()       # [8, 2, 256, 256, 3] uint8, a view of the engine's buffer

Image conventions (`image_convention=`; docs/rendering.md is the reference):

- ``"mujoco"`` (default): rows top-down, what `mujoco.Renderer` returns (= robosuite with
  ``macros.IMAGE_CONVENTION = "opencv"``).
- ``"opengl"`` (alias ``"robosuite"``): OpenGL's bottom-up rows, what robosuite/LIBERO camera
  observations contain with robosuite's default ``IMAGE_CONVENTION = "opengl"`` (upside down).
- ``"openvla"``: the ``"opengl"`` frame rotated by 180 degrees (``img[::-1, ::-1]``), the
  preprocessing OpenVLA-OFT applies to LIBERO observations before its policy sees them.

Visual settings are robosuite's offscreen defaults (model's MSAA samples, shadows, reflections,
lights; collision geoms hidden); ``fast=True`` turns MSAA, shadows and reflections off, which
changes pixels. Other options: ``egl_device`` (EGL device index; default
``$MUJOCO_EGL_DEVICE_ID`` or the first device that works), ``max_geom`` (default 1000, as
robosuite), ``geom_groups`` (the visible geom groups, default ``(1, 2)`` as robosuite: a
model whose visual geoms are in group 0, as plain MJCF files default to, needs
``geom_groups=(0, 1, 2)``).
"""

from __future__ import annotations

import os

import numpy as np

from vlarl_fast._native import C
from vlarl_fast.engine._args import check_fits_in_memory, int_arg

IMAGE_CONVENTIONS = {"mujoco": 0, "opengl": 1, "openvla": 2}
_ALIASES = {"robosuite": "opengl"}
_OPTIONS = ("image_convention", "fast", "egl_device", "max_geom", "geom_groups")
ROBOSUITE_GEOM_GROUPS = (1, 2)  # robosuite hides group 0 (collision geoms), shows 1 (visual)


def _convention_code(name) -> int:
    if not isinstance(name, str):
        raise TypeError(f"image_convention must be one of {sorted(IMAGE_CONVENTIONS)} (a str), "
                        f"got {type(name).__name__} {name!r}")
    key = _ALIASES.get(name, name)
    if key not in IMAGE_CONVENTIONS:
        known = sorted(IMAGE_CONVENTIONS) + sorted(_ALIASES)
        raise ValueError(f"image_convention must be one of {known}, got {name!r}")
    return IMAGE_CONVENTIONS[key]


MAX_GEOM_LIMIT = 1 << 20


def _geom_groups(value) -> list[int]:
    try:
        groups = list(value)
    except TypeError:
        raise TypeError(f"geom_groups must be a sequence of geom group indices in [0, 6), got "
                        f"{type(value).__name__} {value!r}") from None
    if any(isinstance(g, (bool, np.bool_)) or not isinstance(g, (int, np.integer))
           for g in groups):
        raise TypeError(f"geom_groups must be a sequence of geom group indices in [0, 6), got "
                        f"{groups!r}")
    groups = [int(g) for g in groups]
    if any(not 0 <= g < 6 for g in groups):
        raise ValueError(f"geom_groups must be geom group indices in [0, 6), got {groups}")
    return groups


def _default_egl_device() -> int:
    text = os.environ.get("MUJOCO_EGL_DEVICE_ID", "")
    if not text:
        return -1
    if not text.isdigit():
        raise ValueError(f"MUJOCO_EGL_DEVICE_ID must be a device index, got {text!r}")
    return int(text)


def rendering_unavailable_reason(egl_device: int = -1) -> str:
    """'' when this process can render (an EGL display initialises), else why not."""
    return C.egl_unavailable_reason(int(egl_device))


class RenderMixin:
    """Methods of `Engine` that render cameras into its zero-copy frame buffer.

    Attributes set at construction:
        cameras: list of camera names (empty when the engine was built without cameras).
        frames: [num_envs, num_cameras, H, W, 3] uint8 view of the frame buffer, or None.
        image_convention: name of the row/column order of `frames`.
    """

    def _init_rendering(self, cameras=None, height=256, width=256, **options):
        self._renderer = None
        self.frames = None
        try:
            self._setup_rendering(cameras, height, width, options)
        except BaseException:
            self._batch.close()  # the engine is not built: stop its workers now
            raise

    def _setup_rendering(self, cameras, height, width, options: dict) -> None:
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise TypeError(f"unknown rendering option(s) {unknown}; expected any of "
                            f"{list(_OPTIONS)}")
        if isinstance(cameras, str):
            cameras = [cameras]
        try:
            self.cameras = [] if cameras is None else list(cameras)
        except TypeError:
            raise TypeError(f"cameras must be a camera name or a list of names, got "
                            f"{type(cameras).__name__} {cameras!r}") from None
        name = options.get("image_convention", "mujoco")
        convention = _convention_code(name)
        self.image_convention = _ALIASES.get(name, name)
        self.render_height = int_arg("height", height, 1)
        self.render_width = int_arg("width", width, 1)
        fast = options.get("fast", False)
        if not isinstance(fast, (bool, np.bool_)) and fast not in (0, 1):
            raise TypeError(f"fast must be a bool, got {type(fast).__name__} {fast!r}")
        self.render_fast = bool(fast)
        if not self.cameras:
            return  # engines without cameras never touch EGL
        for cam in self.cameras:
            if not isinstance(cam, str):
                raise TypeError(f"cameras must be camera names (str), got {cam!r}")
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras contains duplicates: {self.cameras}")
        egl_device = options.get("egl_device")
        egl_device = (_default_egl_device() if egl_device is None
                      else int_arg("egl_device", egl_device, -1))
        max_geom = int_arg("max_geom", options.get("max_geom", 1000), 1, MAX_GEOM_LIMIT)
        groups = _geom_groups(options.get("geom_groups", ROBOSUITE_GEOM_GROUPS))
        check_fits_in_memory(
            f"the frame buffer (num_envs={self.num_envs} x {len(self.cameras)} camera(s) x "
            f"height={self.render_height} x width={self.render_width} x 3)",
            self.num_envs * len(self.cameras) * self.render_height * self.render_width * 3)
        reason = rendering_unavailable_reason(egl_device)
        if not reason:
            try:
                self._renderer = C.BatchRenderer(self._batch, self.cameras, self.render_height,
                                                 self.render_width, convention,
                                                 self.render_fast, egl_device, max_geom,
                                                 groups)
            except ValueError:  # e.g. a frame larger than the OpenGL implementation renders
                raise
            except RuntimeError as exc:  # EGL or OpenGL setup failed
                reason = str(exc)
        if reason:
            raise RuntimeError(
                f"rendering is unavailable: {reason}. The engine steps without cameras: "
                f"build it with cameras=None (EGL is only needed for cameras).")
        self.frames = self._renderer.frames

    # ------------------------------------------------------------------ rendering
    @property
    def egl_device(self) -> int | None:
        """The EGL device index the contexts live on (None without cameras)."""
        return None if self._renderer is None else self._renderer.egl_device

    @property
    def gl_renderer(self) -> str | None:
        """GL_RENDERER | GL_VERSION of the engine's contexts (None without cameras)."""
        return None if self._renderer is None else self._renderer.gl_renderer

    def render(self, env_ids=None) -> np.ndarray:
        """Renders the cameras of `env_ids` (default all) now, in parallel on the workers.

        Returns `frames`: [num_envs, num_cameras, H, W, 3] uint8, a view of the engine's buffer
        in which the rows of the rendered envs were just overwritten (other rows keep their
        last frames). Render state comes from each env's current mjData (call `forward` after
        `set_state`). KeyboardInterrupt or close() stop it between envs (frames of envs not
        reached keep their last contents).
        """
        self._check_open("render")
        if self._renderer is None:
            raise RuntimeError("render: the engine was built without cameras "
                               "(pass cameras=[names] to Engine(...))")
        self._renderer.render(self._env_ids(env_ids))
        return self.frames

    def frames_torch(self):
        """`frames` as a torch uint8 tensor sharing the engine's memory (no copy)."""
        if self.frames is None:
            raise RuntimeError("frames_torch: the engine was built without cameras")
        import torch  # lazily: the engine does not need torch

        return torch.from_numpy(self.frames)

    def _close_rendering(self) -> None:
        """Frees every worker's GL context now (idempotent); `frames` keeps its memory."""
        if self._renderer is not None:
            self._renderer.close()
