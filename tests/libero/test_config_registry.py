"""LIBERO config without a prompt, clear errors, and the suites read from LIBERO's registry."""

import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from vlarl_fast.envs.libero import config
from vlarl_fast.envs.libero.registry import MAX_EPISODE_STEPS, SUITES, get_task, suite_tasks


def test_import_writes_config_and_never_reads_stdin(tmp_path):
    env = dict(os.environ, LIBERO_CONFIG_PATH=str(tmp_path / "cfg"))
    code = ("from vlarl_fast.envs.libero.config import import_libero; import_libero(); "
            "from libero.libero import benchmark; print('IMPORTED')")
    # stdin is an open pipe nobody writes to: LIBERO's own prompt would block until the timeout.
    proc = subprocess.run([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "IMPORTED" in proc.stdout
    written = yaml.safe_load((tmp_path / "cfg" / "config.yaml").read_text())
    assert set(written) == set(config.CONFIG_KEYS)
    assert os.path.isdir(written["bddl_files"]) and os.path.isdir(written["init_states"])


def test_config_missing_keys_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("LIBERO_CONFIG_PATH", str(tmp_path))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"assets": "/nowhere"}))
    with pytest.raises(config.LiberoNotFoundError, match="bddl_files"):
        config.ensure_config()


def test_missing_assets_error_names_what_to_set(tmp_path, monkeypatch):
    monkeypatch.setenv(config.ASSETS_ENV, str(tmp_path / "no_assets"))
    cfg = {"assets": str(tmp_path / "also_missing")}
    if config._is_asset_tree(config.package_root() / "assets"):
        # LIBERO's own download is installed: it is the fallback.
        assert config.assets_dir(cfg) == (config.package_root() / "assets").resolve()
        return
    with pytest.raises(config.LiberoNotFoundError) as err:
        config.assets_dir(cfg)
    text = str(err.value)
    assert config.ASSETS_ENV in text and "no_assets" in text and "also_missing" in text


def test_assets_env_var_wins():
    assert config.assets_dir() == os.path.realpath(os.environ[config.ASSETS_ENV]) or \
        str(config.assets_dir()) == os.path.realpath(os.environ[config.ASSETS_ENV])


@pytest.mark.parametrize("suite,count", [("libero_spatial", 10), ("libero_object", 10),
                                         ("libero_goal", 10), ("libero_10", 10),
                                         ("libero_90", 90)])
def test_suites_from_libero_registry(suite, count):
    tasks = suite_tasks(suite)
    assert len(tasks) == count
    assert [t.index for t in tasks] == list(range(count))
    for t in tasks:
        assert t.language and t.language == t.language.strip()
        assert os.path.isfile(t.bddl_file) and t.bddl_file.endswith(".bddl")
        assert os.path.isfile(t.init_states_file)
        assert t.max_steps == MAX_EPISODE_STEPS[suite]
    states = tasks[0].init_states()
    assert states.shape[0] == 50 and states.ndim == 2 and states.dtype == np.float64


def test_task_language_matches_libero():
    t = get_task("libero_spatial", 0)
    assert t.language == ("pick up the black bowl between the plate and the ramekin and place "
                          "it on the plate")


def test_unknown_suite_and_index():
    with pytest.raises(ValueError, match="libero_spatial"):
        suite_tasks("libero_nope")
    with pytest.raises(IndexError):
        get_task("libero_goal", 10)
    assert set(SUITES) == set(MAX_EPISODE_STEPS)
