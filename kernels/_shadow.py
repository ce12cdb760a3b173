"""Keeps the source folder `kernels/` from shadowing the Hugging Face `kernels` package.

Python puts the working directory first on sys.path for `python -m ...` and `python -c ...`.
From the repository root, `import kernels` (transformers does it) would then find this folder,
which is only meant to be imported as `vlarl_fast.kernels`. `load_shadowed_package` loads the
package of that name from the rest of sys.path instead and installs it in `sys.modules`, so the
import statement that started this returns the real package. Where no such package is installed,
the import gets an empty placeholder that looks like a stray namespace package (no `__file__`, no
`__version__`: what transformers' availability check reads as "not installed") and whose
attributes raise an ImportError that says what happened.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import types


def load_shadowed_package(name: str, own_path: list[str]) -> None:
    own = {os.path.realpath(os.path.dirname(p)) for p in own_path}
    search = [p for p in sys.path if os.path.realpath(p or os.getcwd()) not in own]
    spec = importlib.machinery.PathFinder.find_spec(name, search)
    if spec is None or spec.loader is None:
        sys.modules.pop(f"{name}._shadow", None)
        sys.modules[name] = _Placeholder(name, own_path[0])
        return
    sys.modules.pop(f"{name}._shadow", None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise


class _Placeholder(types.ModuleType):
    """Stands in for a package that is not installed; the source folder is not it."""

    def __init__(self, name: str, folder: str):
        super().__init__(name, f"placeholder: no package {name!r} is installed ({folder} is vlarl_fast.kernels' source)")
        self.__file__ = None
        self.__path__ = []
        self.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        self.__spec__.submodule_search_locations = []
        self._folder = folder

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise AttributeError(
            f"no package {self.__name__!r} is installed (the folder {self._folder} is vlarl_fast.kernels' "
            f"source, not that package: import vlarl_fast.kernels); {self.__name__}.{attr} does not exist")
