"""Loads the native core `vlarl_fast._C` and checks it matches the installed MuJoCo.

`mujoco` is imported first: its Python module loads libmujoco.so.<version>, which then also
satisfies _C's dependency on the same library.
"""

import mujoco

_REBUILD = (
    "Rebuild vlarl-fast against the installed MuJoCo: "
    "`pip install --force-reinstall --no-deps --no-build-isolation .` from the source tree "
    "(or `pip install -e .` for a development install)."
)

try:
    from vlarl_fast import _C  # noqa: E402
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        f"vlarl_fast._C (the native core) could not be loaded: {exc}. It is built by "
        f"`pip install .`; if it was built against another MuJoCo release than the installed "
        f"mujoco {mujoco.__version__}, the library it needs is missing. {_REBUILD}"
    ) from exc


def _version_number(text: str) -> int:
    major, minor, patch = (int(p) for p in text.split(".")[:3])
    return major * 100 + minor * 10 + patch


_installed = _version_number(mujoco.__version__)
if _C.MUJOCO_VERSION_BUILT != _installed or _C.mujoco_version_linked() != _installed:
    raise ImportError(
        f"vlarl_fast._C was built against MuJoCo {_C.MUJOCO_VERSION_BUILT} (and loaded "
        f"{_C.mujoco_version_linked()}), but mujoco {mujoco.__version__} is installed. {_REBUILD}"
    )

C = _C
MujocoError = _C.MujocoError
EngineClosedError = _C.EngineClosedError
