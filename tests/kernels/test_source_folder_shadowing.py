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
        "import importlib.machinery, sys, os\n"
        "hub = importlib.machinery.PathFinder.find_spec('kernels', [p for p in sys.path if p not in ('', os.getcwd())])\n"
        "import kernels\n"
        "assert sys.modules['kernels'] is kernels and 'kernels._shadow' not in sys.modules\n"
        "if hub is None:\n"
        "    assert kernels.__file__ is None and not hasattr(kernels, '__version__')\n"
        "    print('NOHUB')\n"
        "else:\n"
        "    assert not kernels.__file__.startswith(os.getcwd() + '/kernels/'), kernels.__file__\n"
        "    print('HUB', kernels.__file__)\n"
        "import vlarl_fast.kernels as vk\n"
        "assert callable(vk.grpo_loss) and callable(vk.action_logprob)\n"
    )
    r = _run(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(("HUB", "NOHUB"))


def test_without_the_hub_package_a_placeholder_reads_as_not_installed():
    # Only the repository root and the standard library on the path: no Hugging Face package.
    # transformers' availability check (import; no __version__ and no __file__ = not installed)
    # must then see "not installed", and using the placeholder must say what happened.
    code = (
        "import sys, os\n"
        "sys.path[:] = [os.getcwd()] + [p for p in sys.path if 'site-packages' not in p and p]\n"
        "import kernels\n"
        "assert getattr(kernels, '__version__', 'N/A') == 'N/A' and getattr(kernels, '__file__', None) is None\n"
        "try:\n"
        "    from kernels import get_kernel\n"
        "except ImportError as e:\n"
        "    assert 'vlarl_fast.kernels' in str(kernels.__doc__)\n"
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


def test_transformers_sees_no_hub_package_when_only_the_placeholder_exists():
    pytest.importorskip("transformers", reason="transformers is not installed")
    # import `kernels` while site-packages is hidden (as on a machine without the Hugging Face
    # package), then import transformers with the placeholder in sys.modules.
    code = (
        "import sys, os\n"
        "saved = list(sys.path)\n"
        "sys.path[:] = [os.getcwd()] + [p for p in sys.path if 'site-packages' not in p and p]\n"
        "import kernels\n"
        "sys.path[:] = saved\n"
        "assert kernels.__file__ is None\n"
        "import importlib.metadata as md\n"
        "real_version = md.version\n"
        "def version(name):  # this venv has the hub package's metadata: hide it as well\n"
        "    if name == 'kernels':\n"
        "        raise md.PackageNotFoundError(name)\n"
        "    return real_version(name)\n"
        "md.version = version\n"
        "from transformers.utils import import_utils\n"
        "assert not import_utils.is_kernels_available()\n"
        "from transformers import LlamaConfig, LlamaForCausalLM\n"
        "LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,\n"
        "                             num_attention_heads=2, num_key_value_heads=2, vocab_size=64))\n"
        "print('ok')\n"
    )
    r = _run(code)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().endswith("ok")
