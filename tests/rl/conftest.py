"""One finished tiny `vlarl-fast train` run shared by the tests that only read it or work on a copy
of it (resume reference, history integrity, TensorBoard scalars): each of them used to train its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from _runs import SHARED_RUN, run_train


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """The run's directory. Read it; copy it before changing anything in it."""
    out = tmp_path_factory.mktemp("finished_run") / "run"
    run_train(out, *SHARED_RUN)
    return out
