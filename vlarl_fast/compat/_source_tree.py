"""Makes `vlarl_fast.kernels` importable from a source checkout that was not pip-installed.

setup.py installs the top-level `kernels/` folder as `vlarl_fast.kernels` (package_dir); an
installed or editable package needs nothing from here. In a bare checkout this loads the folder
under that name once, so `import vlarl_fast.kernels` works the same way.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

KERNELS_MODULE = "vlarl_fast.kernels"


def ensure_kernels_importable():
    """Returns the `vlarl_fast.kernels` module, loading it from `<repo>/kernels` if needed."""
    try:
        return importlib.import_module(KERNELS_MODULE)
    except ModuleNotFoundError as err:
        if err.name != KERNELS_MODULE:
            raise
    folder = Path(__file__).resolve().parents[2] / "kernels"
    init = folder / "__init__.py"
    if not init.is_file():
        raise ModuleNotFoundError(
            f"{KERNELS_MODULE} is not installed and no source folder exists at {folder}",
            name=KERNELS_MODULE)
    spec = importlib.util.spec_from_file_location(KERNELS_MODULE, init,
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[KERNELS_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[KERNELS_MODULE]
        raise
    import vlarl_fast

    vlarl_fast.kernels = module
    return module
