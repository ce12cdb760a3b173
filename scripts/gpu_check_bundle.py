"""Prepares `.gpu_bundle/`: what scripts/gpu_check.sh needs on a bare CUDA machine that the
machine lacks and cannot download (docs/gpu.md, "The bundle").

Run here, where scripts/setup.sh made .venv (robosuite, LIBERO, mujoco installed) and LIBERO's
assets are reachable (../shared/libero_assets or $VLARL_LIBERO_ASSETS):

    .venv/bin/python scripts/gpu_check_bundle.py [--python-version 3.12]

It writes, into .gpu_bundle/ (ignored by git; name it in the device tool's `carry`):
  site.tar.xz      pure-Python packages copied from this interpreter (robosuite, libero, bddl,
                   gymnasium, PyOpenGL, easydict, termcolor, future, farama_notifications),
                   robosuite's asset files pruned to what the checked scenes reference, and the
                   LIBERO asset files those scenes reference (libero_assets/)
  mujoco-*.whl     the mujoco wheel for the target Python (pip download), which also carries the
                   headers and libmujoco the native build links against
  debs/*.deb       libEGL / GLVND loaders (apt-get download, amd64), unpacked there when the
                   machine has no libEGL.so.1
The scenes checked: LIBERO tasks (--tasks, default libero_spatial:0, what the LIBERO benchmark
and the GRPO step run) and robosuite's Panda Lift (the render benchmark). Referenced files are
read from each scene's generated MJCF (`file=` attributes), so the bundle holds exactly what
MuJoCo loads. Prints the bundle's size (the device tool carries at most 64 MiB in all).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / ".gpu_bundle"
PURE_PACKAGES = ("robosuite", "libero", "bddl", "gymnasium", "OpenGL", "easydict", "termcolor",
                 "future", "past", "libfuturize", "libpasteurize", "farama_notifications")
DEBS = ("libegl1", "libglvnd0", "libopengl0", "libgl1", "libglx0", "libgles2")
ASSET_TEXT = {".xml"}  # kept whole from asset folders; any other asset file only when referenced


def _defaults() -> None:
    shared = REPO.parent / "shared" / "libero_assets"
    if "VLARL_LIBERO_ASSETS" not in os.environ and shared.is_dir():
        os.environ["VLARL_LIBERO_ASSETS"] = str(shared)
    os.environ.setdefault("LIBERO_CONFIG_PATH", tempfile.mkdtemp(prefix="vlarl_bundle_cfg_"))
    os.environ.setdefault("MUJOCO_GL", "egl")


def scene_files(tasks: list[str]) -> set[Path]:
    """Every file the checked scenes' MJCF references."""
    import robosuite

    from vlarl_fast.envs.libero.registry import get_task
    from vlarl_fast.envs.libero.scene import LiberoScene, make_libero_env

    xmls = []
    for spec in tasks:
        suite, index = spec.split(":")
        task = get_task(suite, int(index))
        xmls.append(LiberoScene(task).robosuite_env.model.get_xml())
        env = make_libero_env(task, height=64, width=64)  # the reference env of the benchmark
        xmls.append(env.env.model.get_xml())
        env.close()
    lift = robosuite.make("Lift", robots="Panda", has_renderer=False, has_offscreen_renderer=False,
                          use_camera_obs=False)
    xmls.append(lift.model.get_xml())
    lift.close()
    files = set()
    for xml in xmls:
        files |= {Path(os.path.normpath(f)) for f in re.findall(r'file="([^"]+)"', xml)}
    return files


def add_package(tar: tarfile.TarFile, package: Path, keep: set[Path]) -> int:
    """The package's files; under an `assets` folder only MJCF files and what a scene references."""
    n = 0
    for path in sorted(package.rglob("*")):
        if path.is_dir() or "__pycache__" in path.parts:
            continue
        if "assets" in path.relative_to(package).parts[:-1] and path.suffix.lower() not in ASSET_TEXT \
                and path.resolve() not in keep:
            continue
        if path.name == "assets" and path.is_symlink():
            continue
        tar.add(path, arcname=str(Path("site") / path.relative_to(package.parent)), recursive=False)
        n += 1
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="libero_spatial:0", help="LIBERO suite:index, comma separated")
    ap.add_argument("--python-version", default="3.12", help="of the GPU machine's python3")
    ap.add_argument("--no-debs", action="store_true")
    args = ap.parse_args()
    _defaults()
    from vlarl_fast.envs.libero.config import assets_dir, ensure_config

    files = {f.resolve() for f in scene_files(args.tasks.split(","))}
    libero_assets = assets_dir(ensure_config()).resolve()
    site = Path(__import__("robosuite").__file__).resolve().parents[1]
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "debs").mkdir(parents=True)
    with tarfile.open(OUT / "site.tar.xz", "w:xz") as tar:
        count = 0
        for name in PURE_PACKAGES:
            path = site / name
            if path.is_dir():
                count += add_package(tar, path, files)
            elif (site / f"{name}.py").is_file():
                tar.add(site / f"{name}.py", arcname=f"site/{name}.py")
        outside = [f for f in files if not f.is_relative_to(site)]
        for f in outside:
            if not f.is_relative_to(libero_assets):
                raise SystemExit(f"a scene references {f}, outside site-packages and LIBERO's assets")
            tar.add(f, arcname=str(Path("libero_assets") / f.relative_to(libero_assets)))
        # LIBERO's asset tree marker files (the XMLs its objects are built from)
        for xml in libero_assets.rglob("*.xml"):
            tar.add(xml, arcname=str(Path("libero_assets") / xml.relative_to(libero_assets)))
    print(f"site.tar.xz: {count} package files, {len(outside)} LIBERO asset files referenced")
    abi = "cp" + args.python_version.replace(".", "")
    import mujoco

    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", args.python_version, "--implementation", "cp", "--abi", abi,
                    "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
                    "--platform", "manylinux2014_x86_64", "-d", str(OUT), f"mujoco=={mujoco.__version__}"],
                   check=True)
    if not args.no_debs and shutil.which("apt-get"):
        proc = subprocess.run(["apt-get", "download", *DEBS], cwd=OUT / "debs", capture_output=True, text=True)
        if proc.returncode:
            print(f"apt-get download failed (the check then relies on the machine's libEGL): {proc.stderr.strip()[-300:]}")
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    for f in sorted(OUT.rglob("*")):
        if f.is_file():
            print(f"  {f.relative_to(REPO)}  {f.stat().st_size / 2**20:.1f} MiB")
    print(f"bundle: {total / 2**20:.1f} MiB in {OUT} (the device tool carries 64 MiB in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
