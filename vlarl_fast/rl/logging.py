"""Metric sinks: JSONL (always), TensorBoard (when enabled), Weights & Biases (when installed and
enabled). Only rank 0 writes; metrics arrive already reduced over ranks."""

from __future__ import annotations

import json
import sys
import time
import types
from pathlib import Path


def tensorboard_without_tensorflow() -> None:
    """Keeps TensorBoard on its own TensorFlow stub from here on.

    TensorBoard imports TensorFlow when it is installed; importing TensorFlow into a process that
    already runs the engine (EGL context, OpenMP pools) segfaults inside TensorFlow's preload
    check (tensorflow 2.21, measured: `vlarl-fast train` died with SIGSEGV at the logger's
    creation, and so did a pytest process reading event files back). Writing and reading scalars
    needs nothing of TensorFlow, so the `tensorboard.compat.notf` marker (TensorBoard's own switch
    for "never import TensorFlow") is set, unless the process has already imported TensorFlow.
    Call it before the first TensorBoard import.
    """
    if "tensorflow" not in sys.modules:
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))


class MetricLogger:
    def __init__(self, out_dir: str | Path, *, enabled: bool, tensorboard: bool = True, wandb: bool = False,
                 config: dict | None = None, resume: bool = False):
        self.enabled = enabled
        self.out_dir = Path(out_dir)
        self._tb = None
        self._wandb = None
        self._jsonl = None
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # Only ever appended to: a resumed or restarted run adds records, it never truncates history.
        self._jsonl = open(self.out_dir / "metrics.jsonl", "a")
        if tensorboard:
            tensorboard_without_tensorflow()
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.out_dir / "tensorboard"))
        if wandb:
            try:
                import wandb as wandb_module
            except ImportError:
                wandb_module = None
            if wandb_module is not None:
                self._wandb = wandb_module.init(project="vlarl-fast", config=config, dir=str(self.out_dir),
                                                resume="allow")

    def log(self, step: int, metrics: dict, *, kind: str = "train") -> None:
        if not self.enabled:
            return
        scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        record = {"kind": kind, "step": step, "time": time.time(), **scalars}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(f"{kind}/{k}" if kind != "train" else k, v, step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log({f"{kind}/{k}": v for k, v in scalars.items()}, step=step)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
