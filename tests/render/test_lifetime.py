"""Lifetime of the per-thread GL contexts, errors, and engines without cameras or EGL."""

from __future__ import annotations

import ctypes
import gc
import os
import subprocess
import sys
import textwrap

import mujoco
import numpy as np
import pytest

from vlarl_fast.engine import Engine

# A tiny scene: GL context creation dominates a create/close cycle, not mesh uploads. Its geoms
# are in group 1, robosuite's visual group (the engine hides group 0 by default, as robosuite).
TINY_XML = """
<mujoco>
  <default><geom group="1"/></default>
  <worldbody>
    <light pos="0 0 2"/>
    <geom type="plane" size="1 1 .1" rgba=".8 .8 .8 1"/>
    <body name="box" pos="0 0 .2"><freejoint/><geom type="box" size=".05 .05 .05" rgba="1 0 0 1"/></body>
    <camera name="front" pos="0 -1 .5" xyaxes="1 0 0 0 .5 1"/>
    <camera name="top" pos="0 0 1.5"/>
  </worldbody>
</mujoco>
"""


@pytest.fixture(scope="module")
def tiny():
    return mujoco.MjModel.from_xml_string(TINY_XML)


def _rss_mb() -> float:
    """Resident set size after glibc hands freed heap back to the OS (malloc_trim), so that memory
    freed but kept by the allocator, which varies with what ran before in this process, is not
    counted as growth."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS as it is
        pass
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("VmRSS not found in /proc/self/status")


def _cycle(model, close: bool) -> np.ndarray:
    """Builds, renders and drops an engine; returns its frames view (which keeps only the
    frame buffer alive, not the GL contexts)."""
    engine = Engine(model, 4, 2, cameras=["front", "top"], height=32, width=32)
    engine.forward()
    frames = engine.render()
    if close:
        engine.close()
    del engine
    gc.collect()
    return frames


def test_create_close_cycles_do_not_grow_memory(tiny):
    """Each cycle makes 2 EGL contexts with MuJoCo's 4096^2 shadow map, MSAA framebuffers and
    fonts: an engine whose renderer leaked adds ~150 MB of RSS on llvmpipe (measured by keeping
    the renderers alive), one that leaked only its 4096^2 shadow map 64 MB. Bound: 36 MB growth
    over 12 cycles after 3 warm-up cycles (3 MB a cycle), allowing allocator noise (measured 2.0 MB
    alone; 25 MB once after 470 other tests in one process on a loaded machine, before RSS was
    read after malloc_trim). The frames views are kept: they must not keep the contexts alive."""
    for _ in range(3):
        _cycle(tiny, close=True)
    before = _rss_mb()
    views = [_cycle(tiny, close=i % 2 == 0) for i in range(12)]  # closed or only dropped
    growth = _rss_mb() - before
    assert all(v.shape == (4, 2, 32, 32, 3) and v.any() for v in views)
    assert growth < 36.0, f"RSS grew by {growth:.1f} MB over 12 create/close cycles"


def test_many_engines_alive_at_once_then_closed(tiny):
    engines = [Engine(tiny, 2, 2, cameras=["front"], height=24, width=24) for _ in range(4)]
    for i, engine in enumerate(engines):
        engine.qpos[:, 2] = 0.1 + 0.1 * i  # box height differs per engine
        engine.forward()
    frames = [engine.render().copy() for engine in engines]
    for i in range(1, 4):
        assert not np.array_equal(frames[0], frames[i])
    for engine in engines:
        engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        engines[0].render()


def test_frames_outlive_the_engine(tiny):
    engine = Engine(tiny, 2, 1, cameras=["front"], height=16, width=16)
    engine.forward()
    frames = engine.render()
    expected = frames.copy()
    engine.close()
    del engine
    gc.collect()
    np.testing.assert_array_equal(frames, expected)  # the view keeps the buffer alive


def test_frames_torch_shares_memory(tiny):
    torch = pytest.importorskip("torch")
    with Engine(tiny, 2, 1, cameras=["front", "top"], height=16, width=16) as engine:
        engine.forward()
        engine.render()
        t = engine.frames_torch()
        assert t.dtype == torch.uint8 and tuple(t.shape) == (2, 2, 16, 16, 3)
        assert t.data_ptr() == engine.frames.ctypes.data
        engine.frames[0, 0, 0, 0, 0] = 7
        assert int(t[0, 0, 0, 0, 0]) == 7


def test_engine_without_cameras_does_not_render(tiny):
    with Engine(tiny, 2, 1) as engine:
        assert engine.cameras == [] and engine.frames is None
        engine.step(None, 2)
        with pytest.raises(RuntimeError, match="without cameras"):
            engine.render()


def test_geom_groups_option(tiny):
    """Group 0 is hidden by default (robosuite's collision group); geom_groups shows it."""
    hidden = mujoco.MjModel.from_xml_string(TINY_XML.replace('group="1"', 'group="0"'))
    data = mujoco.MjData(hidden)
    mujoco.mj_forward(hidden, data)
    with mujoco.Renderer(hidden, 16, 16) as ref:
        ref.update_scene(data, camera="front")  # default MjvOption: groups 0, 1, 2 shown
        expected = ref.render()
    with Engine(hidden, 1, 1, cameras=["front"], height=16, width=16) as engine:
        engine.forward()
        assert engine.render().max() == 0  # no skybox, every geom hidden: black
    with Engine(hidden, 1, 1, cameras=["front"], height=16, width=16,
                geom_groups=(0, 1, 2)) as engine:
        engine.forward()
        np.testing.assert_array_equal(engine.render()[0, 0], expected)


def test_bad_arguments_are_named(tiny):
    with pytest.raises(ValueError, match="camera 'nope' is not in the model.*front, top"):
        Engine(tiny, 1, 1, cameras=["nope"], height=8, width=8)
    with pytest.raises(ValueError, match=r"height must be an int in \[1, 2147483647\], got 0"):
        Engine(tiny, 1, 1, cameras=["front"], height=0, width=8)
    with pytest.raises(ValueError, match="image_convention must be one of"):
        Engine(tiny, 1, 1, cameras=["front"], height=8, width=8, image_convention="upside")
    with pytest.raises(TypeError, match=r"unknown rendering option\(s\) \['shadows'\]"):
        Engine(tiny, 1, 1, cameras=["front"], height=8, width=8, shadows=False)
    with pytest.raises(ValueError, match=r"geom_groups must be .* got \[7\]"):
        Engine(tiny, 1, 1, cameras=["front"], height=8, width=8, geom_groups=[7])
    with pytest.raises(ValueError, match="duplicates"):
        Engine(tiny, 1, 1, cameras=["front", "front"], height=8, width=8)


def test_without_egl_the_engine_steps_and_says_why():
    """No EGL vendor library: cameras raise a clear RuntimeError, stepping still works."""
    code = textwrap.dedent(f"""
        import mujoco
        from vlarl_fast.engine import Engine
        model = mujoco.MjModel.from_xml_string({TINY_XML!r})
        engine = Engine(model, 2, 2)
        engine.step(None, 5)
        assert engine.time[0] > 0
        try:
            Engine(model, 2, 2, cameras=["front"])
        except RuntimeError as exc:
            print("ERROR:", exc)
        else:
            raise SystemExit("no error without EGL")
    """)
    env = dict(os.environ, __EGL_VENDOR_LIBRARY_FILENAMES="/nonexistent/egl_vendor.json",
               __EGL_VENDOR_LIBRARY_DIRS="/nonexistent")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ERROR: rendering is unavailable: no EGL display could be initialised" in out.stdout
    assert "cameras=None" in out.stdout


def test_egl_device_by_index(tiny):
    from vlarl_fast._native import C

    count = C.egl_device_count()
    assert count >= 1
    with Engine(tiny, 1, 1, cameras=["front"], height=8, width=8, egl_device=0) as engine:
        assert engine.egl_device == 0
        engine.forward()
        assert engine.render().any()
    with pytest.raises(RuntimeError, match=f"EGL device index {count} is out of range: "
                                           f"{count} EGL device"):
        Engine(tiny, 1, 1, cameras=["front"], height=8, width=8, egl_device=count)


def test_engines_without_cameras_never_load_egl():
    """With Python's mujoco GL disabled, only an engine with cameras loads libEGL (dlopen), and
    it renders whatever MUJOCO_GL says."""
    code = textwrap.dedent("""
        import mujoco
        from vlarl_fast.engine import Engine
        model = mujoco.MjModel.from_xml_string(XML)
        engine = Engine(model, 2, 2)
        engine.step(None, 3)
        loaded = lambda: "libEGL" in open("/proc/self/maps").read()
        assert not loaded(), "libEGL loaded by an engine without cameras"
        with Engine(model, 1, 1, cameras=["front"], height=8, width=8) as seeing:
            seeing.forward()
            assert seeing.render().any()
        assert loaded()
        print("OK")
    """).replace("XML", repr(TINY_XML))
    env = dict(os.environ, MUJOCO_GL="disable")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr


def test_gl_renderer_is_reported(tiny):
    with Engine(tiny, 1, 1, cameras=["front"], height=8, width=8) as engine:
        renderer = engine.gl_renderer
        assert " | " in renderer and renderer.split(" | ")[1][0].isdigit(), renderer


@pytest.mark.skipif(not os.path.exists("/dev/nvidia0"), reason="GPU only: needs an NVIDIA GPU")
def test_renders_on_the_gpu(tiny):
    """On a GPU machine the contexts live on an EGL device of the card, not Mesa's software
    rasteriser (the parity tests then compare GPU frames with mujoco.Renderer's GPU frames)."""
    with Engine(tiny, 2, 2, cameras=["front"], height=64, width=64) as engine:
        assert engine.egl_device >= 0
        assert "llvmpipe" not in engine.gl_renderer and "NVIDIA" in engine.gl_renderer.upper()
        engine.forward()
        assert engine.render().any()
