"""`vlarl-fast train` with TensorBoard on (the default job's setting), TensorFlow installed.

TensorBoard imports TensorFlow when it can; doing that in a process that already renders with the
engine crashed the default job with SIGSEGV (tensorflow 2.21). The logger keeps TensorBoard on its
stub: the run must finish and its event file must hold the scalars that metrics.jsonl holds. The
test reads the file back in its own process the same way (this process may have rendered too).
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from _runs import train_metrics
from vlarl_fast.rl.logging import tensorboard_without_tensorflow


def test_train_with_tensorboard_writes_the_jsonl_scalars(finished_run):
    if importlib.util.find_spec("tensorboard") is None:
        pytest.skip("tensorboard is not installed")
    out = finished_run  # trained with run.tensorboard=true; it finished (exit 0) or the fixture failed

    tf_before = "tensorflow" in sys.modules
    tensorboard_without_tensorflow()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted((out / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 1, files
    acc = EventAccumulator(str(files[0]))
    acc.Reload()
    jsonl = train_metrics(out)
    assert sorted(jsonl) == [1, 2, 3]
    tags = set(acc.Tags()["scalars"])
    # every scalar of every step (a per-task success exists only in the steps that sampled the task)
    keys = {k for rec in jsonl.values() for k, v in rec.items()
            if k not in ("kind", "step", "time") and isinstance(v, (int, float))}
    assert keys and keys <= tags, sorted(keys - tags)
    for key in keys:
        logged = {e.step: e.value for e in acc.Scalars(key)}
        expected = {step: rec[key] for step, rec in jsonl.items() if key in rec}
        assert sorted(logged) == sorted(expected), key
        for step, value in expected.items():
            assert logged[step] == pytest.approx(value, rel=1e-6, abs=1e-6), (key, step)
    assert ("tensorflow" in sys.modules) == tf_before  # reading the events did not import TensorFlow
