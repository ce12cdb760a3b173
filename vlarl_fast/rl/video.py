"""mp4 rollout videos (imageio + ffmpeg): one file per episode, named by task and outcome."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_videos(directory: str | Path, clips: list[tuple[str, bool, np.ndarray]], fps: int = 4,
                 scale: int = 4) -> list[Path]:
    """clips: (task name, success, frames uint8 [T, H, W, 3]); frames are upscaled `scale`x."""
    import imageio

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (task, success, frames) in enumerate(clips):
        big = np.repeat(np.repeat(frames, scale, axis=1), scale, axis=2)
        path = directory / f"{i:03d}_{task}_{'success' if success else 'failure'}.mp4"
        imageio.mimwrite(path, list(big), fps=fps, macro_block_size=1)
        paths.append(path)
    return paths
