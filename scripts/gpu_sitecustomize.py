"""Makes the source tree importable without `pip install` and without the tree on sys.path.

scripts/gpu_check.sh copies this file as `sitecustomize.py` into a temporary folder put first
on PYTHONPATH, with VLARL_REPO naming the source tree. Every Python process it starts (pytest,
the subprocesses of tests, the benchmarks) then finds
  vlarl_fast          -> VLARL_REPO/vlarl_fast
  vlarl_fast.kernels  -> VLARL_REPO/kernels   (setup.py's package_dir, as an editable install)
  tests, benchmarks   -> VLARL_REPO/tests, VLARL_REPO/benchmarks (namespace packages)
without touching the tree and without putting the tree itself on sys.path. The latter matters
where the Hugging Face `kernels` package is not installed: with the tree on sys.path,
transformers' availability probe finds the source folder `kernels/` there, imports it, and
`import transformers.models.llama` fails (see docs/gpu.md). The Python steps of the check
therefore run with `python3 -P` (no script/working directory prepended to sys.path).

A sitecustomize module found later on sys.path (the distribution's) is still run.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

_REPO = os.environ.get("VLARL_REPO", "")
_TOP = ("vlarl_fast", "tests", "benchmarks")


class _SourceTreeFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "vlarl_fast.kernels":
            init = os.path.join(_REPO, "kernels", "__init__.py")
            if os.path.isfile(init):
                return importlib.util.spec_from_file_location(
                    name, init, submodule_search_locations=[os.path.dirname(init)])
            return None
        if name in _TOP:
            return importlib.machinery.PathFinder.find_spec(name, [_REPO])
        return None


if _REPO and not any(type(f).__name__ == "_SourceTreeFinder" for f in sys.meta_path):
    sys.meta_path.insert(0, _SourceTreeFinder())


def _run_next_sitecustomize():
    here = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))
    rest = [p for p in sys.path if os.path.realpath(p or os.getcwd()) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # pragma: no cover - the distribution's hook
            print(f"gpu_check: the distribution's sitecustomize failed: {exc}", file=sys.stderr)


_run_next_sitecustomize()
