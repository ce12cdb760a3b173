"""Builds the native modules with CMake; everything else is plain Python.

`vlarl_fast._C` is the physics core (MuJoCo); `vlarl_fast._cpu_kernels` holds the CPU kernels of
vlarl_fast.kernels and needs no MuJoCo. Both come from one CMake build folder.

setup.py only drives CMake and copies the built module (the layout MuJoCo's bindings use).
Environment knobs:
  VLARL_BUILD_TYPE   CMake build type (default Release)
  VLARL_WITH_CUDA    ON / OFF / AUTO (default AUTO: compile CUDA sources where nvcc is found)
  VLARL_SANITIZE     e.g. "address;undefined" to build the core with sanitizers
  CMAKE_ARGS         extra arguments passed to CMake
"""

import os
import shlex
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).parent.resolve()


class CMakeExtension(Extension):
    def __init__(self, name: str):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        out_dir = Path(self.get_ext_fullpath(ext.name)).parent.resolve()
        build_dir = Path(self.build_temp).resolve() / "cmake"
        build_dir.mkdir(parents=True, exist_ok=True)
        cfg = os.environ.get("VLARL_BUILD_TYPE", "Release")
        args = [
            f"-DCMAKE_BUILD_TYPE={cfg}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DVLARL_PYTHON_OUTPUT_DIR={out_dir}",
            f"-DVLARL_WITH_CUDA={os.environ.get('VLARL_WITH_CUDA', 'AUTO')}",
            "-DVLARL_BUILD_TESTS=OFF",
        ]
        if os.environ.get("VLARL_SANITIZE"):
            args.append(f"-DVLARL_SANITIZE={os.environ['VLARL_SANITIZE']}")
        args += shlex.split(os.environ.get("CMAKE_ARGS", ""))
        subprocess.check_call(["cmake", "-S", str(ROOT), "-B", str(build_dir), *args])
        jobs = str(os.cpu_count() or 2)
        subprocess.check_call(
            ["cmake", "--build", str(build_dir), "--target", ext.name.rsplit(".", 1)[-1],
             "--parallel", jobs]
        )


packages = find_packages(include=["vlarl_fast", "vlarl_fast.*"])
packages.append("vlarl_fast.kernels")

setup(
    name="vlarl-fast",
    version="0.1.0",
    description="Fast RL for Vision-Language-Action policies: native MuJoCo rollouts, fused GRPO kernels",
    python_requires=">=3.10",
    packages=packages,
    package_dir={"vlarl_fast.kernels": "kernels"},
    package_data={"vlarl_fast.recipes": ["*.yaml"]},
    ext_modules=[CMakeExtension("vlarl_fast._C"), CMakeExtension("vlarl_fast._cpu_kernels")],
    cmdclass={"build_ext": CMakeBuild},
    install_requires=[
        # robosuite 1.4.0 (LIBERO's pin) breaks on mujoco >= 3.10; 3.3.7 is verified with it.
        "mujoco==3.3.7",
        "numpy>=1.26",
        "robosuite==1.4.0",
        "termcolor",
        # torch is deliberately not pinned to a build here: install the CPU wheel first
        # (see README) so that pip never pulls a multi-GB CUDA build on a CPU machine.
        "torch>=2.4",
        "transformers>=4.40",
        "safetensors",
        "tokenizers",
        "sentencepiece",
        "pyyaml",
        "tqdm",
        "rich",
        "gymnasium>=0.29",
        "imageio",
        "imageio-ffmpeg",
        "tensorboard",
        "matplotlib",
    ],
    extras_require={
        "triton": ["triton>=3.7"],
        "libero": ["bddl==1.0.1", "easydict", "PyOpenGL", "opencv-python-headless", "future",
                   "cloudpickle"],
        "test": ["pytest", "pytest-benchmark", "pytest-timeout", "hypothesis",
                 # vlarl_fast.compat.torchrl_env and its tests
                 "torchrl>=0.14", "tensordict>=0.14"],
        # The libraries SimpleVLA-RL preprocesses images with (input-parity tests); what
        # importing veRL's core_algos needs besides verl itself, which scripts/setup.sh installs
        # --no-deps (tests/compat/test_verl_compat.py: compat.verl against veRL 0.9.1).
        "parity": ["tensorflow-cpu", "pillow", "omegaconf", "codetiming"],
    },
    entry_points={"console_scripts": ["vlarl-fast=vlarl_fast.cli:main"]},
    zip_safe=False,
)
