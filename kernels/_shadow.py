"""Keeps the source folder `kernels/` from shadowing the Hugging Face `kernels` package.

Python puts the working directory first on sys.path for `python -m ...` and `python -c ...`.
From the repository root, `import kernels` (transformers does it) would then find this folder,
which is only meant to be imported as `vlarl_fast.kernels`. `load_shadowed_package` loads the
package of that name from the rest of sys.path instead and installs it in `sys.modules`, so the
import statement that started this returns the real package.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys


def load_shadowed_package(name: str, own_path: list[str]) -> None:
    own = {os.path.realpath(os.path.dirname(p)) for p in own_path}
    search = [p for p in sys.path if os.path.realpath(p or os.getcwd()) not in own]
    spec = importlib.machinery.PathFinder.find_spec(name, search)
    if spec is None or spec.loader is None:
        sys.modules.pop(name, None)
        sys.modules.pop(f"{name}._shadow", None)
        raise ModuleNotFoundError(
            f"no module named {name!r} outside the vlarl-fast source tree (the folder "
            f"{own_path[0]} is vlarl_fast.kernels' source: import vlarl_fast.kernels)",
            name=name,
        )
    sys.modules.pop(f"{name}._shadow", None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
