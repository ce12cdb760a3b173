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


def _writer_main(conn) -> None:
    while True:
        msg = conn.recv()
        if msg is None:
            return
        directory, clips, fps, scale = msg
        conn.send([str(p) for p in write_videos(directory, clips, fps, scale)])


class VideoWriter:
    """Writes videos from a small helper process started before the engine exists.

    ffmpeg runs as a child process; forking it from a process that already holds the engine's
    renderers and a policy can fail with ENOMEM under the kernel's overcommit heuristic, so the
    fork happens in this helper instead."""

    def __init__(self):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_writer_main, args=(child,), daemon=True)
        self._proc.start()

    def write(self, directory, clips, fps: int = 4, scale: int = 4) -> list[str]:
        self._conn.send((str(directory), clips, fps, scale))
        return self._conn.recv()

    def close(self) -> None:
        if self._proc.is_alive():
            self._conn.send(None)
            self._proc.join(timeout=30)
