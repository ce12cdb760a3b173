#pragma once

#include <memory>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "../core/chunk_runner.h"
#include "../core/env_batch.h"

namespace vlarl {

// Each part of the core registers its Python face here.
void bind_env_batch(pybind11::module_& m);
void bind_render(pybind11::module_& m);
void bind_control(pybind11::module_& m);
void bind_cuda(pybind11::module_& m);
void bind_chunk_pool(pybind11::module_& m);

// A chunk call's output buffers (numpy arrays owned by the Python layer), checked against the
// runner: done [N, K_cap] uint8, eef_pos [N, K_cap, 3], ... (bind_control.cc).
ChunkOutputs chunk_outputs_from_py(const ChunkRunner& r, pybind11::array eef_pos,
                                   pybind11::array eef_quat, pybind11::array gripper_qpos,
                                   pybind11::array joint_pos, pybind11::array done,
                                   pybind11::array success, pybind11::array steps);
// The render target of a chunk call (render_mode 0 none, 1 end, 2 every) from a BatchRenderer
// (or None); `keep` (optional) receives a reference that keeps the renderer alive.
RenderMode render_target_from_py(int render_mode, pybind11::object renderer,
                                 pybind11::object frames_every, ChunkOutputs* out,
                                 FrameTarget* target, std::function<void()>* check,
                                 std::shared_ptr<void>* keep);

// Env ids from an optional int array: None -> {} (all envs).
std::vector<int> ids_from_py(const pybind11::object& env_ids);

// The interrupt check every EnvBatch gets (EnvBatch::set_interrupt_check): on Python's main
// thread only (the one that runs signal handlers), takes the GIL and runs PyErr_CheckSignals.
// When a handler raised (KeyboardInterrupt for SIGINT), the exception is kept for this thread
// and the check returns true, which stops the running call.
bool python_signals_pending();

// With the GIL held: raises the exception python_signals_pending kept on this thread
// (KeyboardInterrupt if none was kept).
[[noreturn]] void raise_interrupted(const Interrupted& e);

// Runs fn() with the GIL released: every call that takes an engine's call lock goes through
// here (a thread must never wait for the call lock while holding the GIL: the lock holder may
// need the GIL for its interrupt check). Interrupted becomes the Python exception of the signal.
template <typename Fn>
auto without_gil(Fn&& fn) -> decltype(fn()) {
  try {
    pybind11::gil_scoped_release nogil;
    return fn();
  } catch (const Interrupted& e) {
    raise_interrupted(e);
  }
}

// A shared_ptr whose deleter releases the GIL around `delete` (destructors of engine objects
// take the call lock; see without_gil).
template <typename T>
std::shared_ptr<T> holder_releasing_gil(T* p) {
  return std::shared_ptr<T>(p, [](T* q) {
    if (Py_IsInitialized() && PyGILState_Check()) {
      pybind11::gil_scoped_release nogil;
      delete q;
    } else {
      delete q;
    }
  });
}

}  // namespace vlarl
