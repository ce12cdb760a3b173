"""Locating the user's LIBERO install and importing `libero` without its stdin prompt.

LIBERO keeps its paths in `$LIBERO_CONFIG_PATH/config.yaml` (default `~/.libero/config.yaml`) with
keys benchmark_root, bddl_files, init_states, datasets, assets. When that file is missing,
`import libero.libero` asks on stdin where datasets go (and blocks a headless job). Here the file is
written first, with LIBERO's own defaults for the installed package, so the import never prompts.

Assets (scene and object meshes/textures) are found, in this order:
  1. `VLARL_LIBERO_ASSETS` (a folder holding LIBERO's asset tree), if set;
  2. the `assets` key of the LIBERO config file;
  3. `<libero package>/libero/assets` (where LIBERO's own download puts them).
The PyPI `libero` 0.1.1 looks only at (3) (and else tries a HuggingFace download); the chosen
folder is handed to it through its asset-path cache, so nothing is written into site-packages.

`import_libero()` is the single entry point: every other module of this package calls it
instead of importing `libero` directly.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import yaml

CONFIG_KEYS = ("benchmark_root", "bddl_files", "init_states", "datasets", "assets")
ASSETS_ENV = "VLARL_LIBERO_ASSETS"
# Folders every LIBERO asset tree has; used to tell an asset folder from a wrong path.
_ASSET_MARKERS = ("scenes", "stable_scanned_objects", "textures")

_INSTALL_HINT = (
    "Install LIBERO's code with `pip install --no-deps libero==0.1.1` plus its environment "
    "dependencies (`pip install bddl==1.0.1 robosuite==1.4.0 easydict termcolor PyOpenGL "
    "opencv-python-headless matplotlib future cloudpickle gymnasium`), or install LIBERO from "
    "source (https://github.com/Lifelong-Robot-Learning/LIBERO, `pip install -e .`)."
)


class LiberoNotFoundError(ImportError):
    """LIBERO's code, config or assets are missing; the message names what to install or set."""


def config_dir() -> Path:
    """The folder LIBERO reads `config.yaml` from (`LIBERO_CONFIG_PATH`, default ~/.libero)."""
    return Path(os.environ.get("LIBERO_CONFIG_PATH", os.path.expanduser("~/.libero")))


def config_file() -> Path:
    return config_dir() / "config.yaml"


def package_root() -> Path:
    """`<site-packages>/libero/libero`, found without importing it (the import may prompt)."""
    spec = importlib.util.find_spec("libero")
    if spec is None or not spec.submodule_search_locations:
        raise LiberoNotFoundError(f"the `libero` package is not installed. {_INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        root = Path(location) / "libero"
        if (root / "__init__.py").is_file():
            return root
    raise LiberoNotFoundError(
        f"the installed `libero` package ({list(spec.submodule_search_locations)}) has no "
        f"`libero/libero` module; it is not LIBERO. {_INSTALL_HINT}")


def default_paths(root: Path | None = None) -> dict[str, str]:
    """LIBERO's own defaults (`libero.libero.get_default_path_dict`) for the installed package."""
    root = package_root() if root is None else Path(root)
    return {
        "benchmark_root": str(root),
        "bddl_files": str(root / "bddl_files"),
        "init_states": str(root / "init_files"),
        "datasets": str((root / ".." / "datasets").resolve()),
        "assets": str(root / "assets"),
    }


def ensure_config() -> dict[str, str]:
    """Reads LIBERO's config file, writing LIBERO's defaults there first if it is missing.

    Returns the config's paths. Raises `LiberoNotFoundError` if the file lacks a needed key.
    """
    path = config_file()
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            yaml.safe_dump(default_paths(), f)
    with open(path) as f:
        config = yaml.safe_load(f) or {}
    missing = [k for k in ("bddl_files", "init_states") if k not in config]
    if missing:
        raise LiberoNotFoundError(
            f"LIBERO config {path} lacks the key(s) {missing}; add them (LIBERO's defaults: "
            f"{default_paths()}) or delete the file to have it rewritten with the defaults.")
    return {k: str(v) for k, v in config.items()}


def _is_asset_tree(folder: Path) -> bool:
    return folder.is_dir() and all((folder / m).is_dir() for m in _ASSET_MARKERS)


def assets_dir(config: dict[str, str] | None = None) -> Path:
    """The LIBERO asset folder to use (see the module docstring for the search order)."""
    config = ensure_config() if config is None else config
    candidates = []
    if os.environ.get(ASSETS_ENV):
        candidates.append((f"${ASSETS_ENV}", Path(os.environ[ASSETS_ENV])))
    if config.get("assets"):
        candidates.append((f"'assets' in {config_file()}", Path(config["assets"])))
    candidates.append(("the libero package", package_root() / "assets"))
    for _, folder in candidates:
        if _is_asset_tree(folder):
            return folder.resolve()
    tried = "; ".join(f"{name}: {folder}" for name, folder in candidates)
    raise LiberoNotFoundError(
        f"LIBERO's assets were not found (tried {tried}; an asset folder holds "
        f"{', '.join(_ASSET_MARKERS)}). Download them with LIBERO "
        f"(`python benchmark_scripts/download_libero_datasets.py` in a LIBERO checkout, or "
        f"`huggingface-cli download yifengzhu-hf/LIBERO-datasets --repo-type dataset` and take its "
        f"assets folder), then set {ASSETS_ENV}=<folder> or the 'assets' key of {config_file()}.")


_imported = False


def import_libero():
    """Imports `libero.libero` (config written first, assets wired in) and returns the module."""
    global _imported
    config = ensure_config()
    assets = assets_dir(config)
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    try:
        import libero.libero as libero_pkg
    except ImportError as exc:
        raise LiberoNotFoundError(f"importing libero failed: {exc}. {_INSTALL_HINT}") from exc
    if not _imported:
        if hasattr(libero_pkg, "_assets_path_cache"):  # PyPI 0.1.1: get_assets_path() cache
            libero_pkg._assets_path_cache = str(assets)
        elif not _is_asset_tree(package_root() / "assets"):
            # LIBERO from source reads <package>/assets only.
            raise LiberoNotFoundError(
                f"this LIBERO version reads its assets from {package_root() / 'assets'} only; "
                f"link or copy the asset folder {assets} there.")
        _imported = True
    return libero_pkg
