"""The C++ tests under sanitizers: the core's (csrc/tests/engine_core_test.cc) and the CPU
kernels' (csrc/tests/kernels_test.cc: their task runner on the persistent pool, fork, argument
checks, and the AVX512-BF16 kernels where the CPU has them).

Builds them without Python with VLARL_SANITIZE, then runs the core's test binary on the built-in
contact scene and the kernels' binary: AddressSanitizer + UndefinedBehaviorSanitizer, and
ThreadSanitizer for the pools. libmujoco itself is not instrumented; the engine's own code and its
use of MuJoCo's memory is.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vlarl_fast.envs.scenes import contact_pile_xml

ROOT = Path(__file__).resolve().parents[2]

SANITIZERS = {"asan_ubsan": "address;undefined", "tsan": "thread"}


@pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake to build the C++ tests")
@pytest.mark.parametrize("name", sorted(SANITIZERS))
def test_core_tests_run_clean_under_sanitizer(name, tmp_path):
    build = ROOT / "build" / f"sanitize-{name}"
    subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(build), f"-DPython_EXECUTABLE={sys.executable}",
         f"-DVLARL_SANITIZE={SANITIZERS[name]}", "-DVLARL_BUILD_PYTHON=OFF",
         "-DVLARL_WITH_CUDA=OFF", "-DCMAKE_BUILD_TYPE=RelWithDebInfo"],
        check=True, capture_output=True, text=True)
    subprocess.run(["cmake", "--build", str(build), "--target", "engine_core_test", "kernels_test", "-j2"],
                   check=True, capture_output=True, text=True)
    scene = tmp_path / "pile.xml"
    tiny = tmp_path / "pile_tiny_arena.xml"
    scene.write_text(contact_pile_xml(24))
    tiny.write_text(contact_pile_xml(24).replace('memory="20M"', 'memory="32K"'))
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               TSAN_OPTIONS="halt_on_error=1", UBSAN_OPTIONS="print_stacktrace=1")
    for command in ([str(build / "engine_core_test"), str(scene), str(tiny)],
                    [str(build / "kernels_test")]):
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        report = proc.stdout + proc.stderr
        assert proc.returncode == 0, report[-4000:]
        assert "all checks passed" in proc.stdout, report[-4000:]
        for marker in ("ERROR: AddressSanitizer", "runtime error:", "WARNING: ThreadSanitizer",
                       "ERROR: LeakSanitizer"):
            assert marker not in report, report[-4000:]
