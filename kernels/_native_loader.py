"""Loads `vlarl_fast._cpu_kernels`, the native CPU kernels of this package (csrc/kernels/).

The module links neither MuJoCo nor the physics core (`vlarl_fast._C`), so loading it imports
neither: vlarl_fast.kernels works where the engine is not installed or cannot load. Where the
module was not built (a source tree run without `pip install`), `load()` returns None and
`unavailable_reason()` says why; the PyTorch paths are used then.
"""

from __future__ import annotations

import importlib

MODULE = "vlarl_fast._cpu_kernels"

_module = None
_reason: str | None = None
_tried = False


def load():
    """The extension module, or None when it cannot be imported (see unavailable_reason)."""
    global _module, _reason, _tried
    if not _tried:
        _tried = True
        try:
            _module = importlib.import_module(MODULE)
        except ImportError as exc:
            _reason = f"{MODULE} could not be imported ({exc}); it is built by `pip install .`"
    return _module


def unavailable_reason() -> str | None:
    """Why load() returned None (None when it loaded)."""
    load()
    return _reason
