"""Argument checks shared by the engine's Python face: one-line errors that name the argument.

Integers cross into C++ as 32-bit `int`: every integer argument is checked here against its
allowed range first, so that no raw pybind11 conversion error reaches the caller. Booleans are
not integers here (``nstep=True`` is a TypeError, not one step).
"""

from __future__ import annotations

import operator
import os

import numpy as np

INT32_MAX = 2**31 - 1


def int_arg(name: str, value, low: int, high: int = INT32_MAX) -> int:
    """`value` as an int in [low, high]: TypeError for non-integers (bool included; integer
    enums and numpy integers are integers), ValueError outside the range; both name the
    argument and the range."""
    number = None
    if not isinstance(value, (bool, np.bool_)):
        try:
            number = operator.index(value)
        except TypeError:
            pass
    if number is None:
        raise TypeError(f"{name} must be an int in [{low}, {high}], got "
                        f"{type(value).__name__} {value!r}")
    if not low <= number <= high:
        raise ValueError(f"{name} must be an int in [{low}, {high}], got {number!r}")
    return number


def physical_memory_bytes() -> int | None:
    """Total RAM of the machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_in_memory(what: str, nbytes: int) -> None:
    """MemoryError naming `what` when a buffer the engine would fill (touch) at once is larger
    than the machine's RAM: the OS would kill the process instead of failing the allocation."""
    total = physical_memory_bytes()
    if total is not None and nbytes > total:
        raise MemoryError(f"{what} needs {nbytes / 2**30:.1f} GiB, more than this machine's "
                          f"{total / 2**30:.1f} GiB of RAM")
