"""The source folder `kernels/` must not shadow the Hugging Face `kernels` package.

From the repository root, `python -m ...` and `python -c ...` put the root first on sys.path.
transformers >= 5 imports the Hugging Face `kernels` package; before the fix it got this folder.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_import_kernels_from_the_root_gives_the_hub_package_or_a_named_error():
    code = (
        "import importlib.util, sys, os\n"
        "hub = importlib.util.find_spec('kernels', [p for p in sys.path if p not in ('', os.getcwd())])\n"
        "try:\n"
        "    import kernels\n"
        "except ModuleNotFoundError as e:\n"
        "    assert hub is None, e\n"
        "    assert 'vlarl_fast.kernels' in str(e), e\n"
        "    print('NOHUB')\n"
        "else:\n"
        "    assert hub is not None\n"
        "    assert not kernels.__file__.startswith(os.getcwd() + '/kernels/'), kernels.__file__\n"
        "    assert sys.modules['kernels'] is kernels\n"
        "    assert 'kernels._shadow' not in sys.modules\n"
        "    print('HUB', kernels.__file__)\n"
        "import vlarl_fast.kernels as vk\n"
        "assert callable(vk.grpo_loss) and callable(vk.action_logprob)\n"
    )
    r = _run(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(("HUB", "NOHUB"))


def test_without_the_hub_package_the_error_names_the_real_import():
    # Only the repository root and the standard library on the path: no Hugging Face package.
    code = (
        "import sys, os\n"
        "sys.path[:] = [os.getcwd()] + [p for p in sys.path if 'site-packages' not in p and p]\n"
        "try:\n"
        "    import kernels\n"
        "except ModuleNotFoundError as e:\n"
        "    assert 'vlarl_fast.kernels' in str(e), e\n"
        "    assert 'kernels' not in sys.modules\n"
        "    print('ok')\n"
    )
    r = _run(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_transformers_imports_from_the_root():
    pytest.importorskip("transformers", reason="transformers is not installed")
    r = _run("import transformers; from transformers import LlamaConfig, LlamaForCausalLM; "
             "import vlarl_fast.kernels; print('ok')")
    assert r.returncode == 0, r.stderr[-2000:]
