// Python face of ChunkPool: one native thread pool for engines of several models, chunks over
// any mix of their envs as one job, EnvPool-style send/recv. The GIL is released while recv
// waits; Python signals are polled there (KeyboardInterrupt stops the running job).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "../core/chunk_pool.h"
#include "bindings.h"

namespace py = pybind11;

namespace vlarl {
namespace {

using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;
using I64 = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;

std::vector<int> int_list(const I64& a) {
  std::vector<int> out(a.size());
  for (py::ssize_t i = 0; i < a.size(); ++i) out[i] = static_cast<int>(a.data()[i]);
  return out;
}

// part: (runner, env_ids [n] int, tags [n] int, actions [n, K, A] float64, eef_pos, eef_quat,
//        gripper_qpos, joint_pos, done, success, steps, render_mode, renderer or None)
ChunkPart part_from_py(const py::tuple& t, int* K) {
  if (t.size() != 13) throw py::value_error("send: each part is a tuple of 13 items");
  ChunkPart part;
  part.runner = t[0].cast<std::shared_ptr<ChunkRunner>>();
  I64 ids = I64::ensure(t[1]), tags = I64::ensure(t[2]);
  F64 acts = F64::ensure(t[3]);
  if (!ids || !tags || !acts || ids.ndim() != 1 || tags.ndim() != 1) {
    throw py::type_error("send: env_ids and tags must be 1-D int arrays, actions a float array");
  }
  const int adim = part.runner->action_dim();
  if (acts.ndim() != 3 || acts.shape(0) != ids.size() || acts.shape(2) != adim) {
    throw py::value_error("send: actions must have shape (" + std::to_string(ids.size()) +
                          ", K, " + std::to_string(adim) + ")");
  }
  if (*K < 0) *K = static_cast<int>(acts.shape(1));
  if (acts.shape(1) != *K) throw py::value_error("send: every part must have the same K");
  part.envs = int_list(ids);
  part.tags.assign(tags.data(), tags.data() + tags.size());
  part.actions.assign(acts.data(), acts.data() + acts.size());
  part.out = chunk_outputs_from_py(*part.runner, t[4], t[5], t[6], t[7], t[8], t[9], t[10]);
  part.mode = render_target_from_py(t[11].cast<int>(), t[12], py::none(), &part.out,
                                    &part.frames, &part.check, &part.keep);
  if (part.mode == RenderMode::kEvery) {
    throw py::value_error("send: render mode 'every' is not supported by the pool");
  }
  return part;
}

}  // namespace

void bind_chunk_pool(py::module_& m) {
  py::class_<ChunkPool, std::shared_ptr<ChunkPool>>(m, "ChunkPool")
      .def(py::init([](int num_threads) {
             return without_gil([&] { return holder_releasing_gil(new ChunkPool(num_threads)); });
           }),
           py::arg("num_threads"))
      .def_property_readonly("num_threads", &ChunkPool::num_threads)
      .def_property_readonly("closed", &ChunkPool::closed)
      .def_property_readonly("in_flight", &ChunkPool::in_flight)
      .def(
          "send",
          [](ChunkPool& p, py::list parts) {
            int K = -1;
            std::vector<ChunkPart> native;
            for (auto item : parts) native.push_back(part_from_py(item.cast<py::tuple>(), &K));
            without_gil([&] { p.send(std::move(native), K); });
          },
          py::arg("parts"),
          "Queues one chunk job over the parts (see bind_chunk_pool.cc) and returns at once. "
          "The output buffers must stay alive until their envs are received.")
      .def(
          "recv",
          [](ChunkPool& p, int min_envs) {
            ChunkPool::Received r = without_gil(
                [&] { return p.recv(min_envs, &python_signals_pending, 10); });
            py::array_t<std::int64_t> tags(static_cast<py::ssize_t>(r.tags.size()));
            std::copy(r.tags.begin(), r.tags.end(), tags.mutable_data());
            return py::make_tuple(tags, r.failed);
          },
          py::arg("min_envs"),
          "Waits for >= min(min_envs, in flight) finished envs; returns (tags [n] int64 in "
          "completion order, failed tags (MuJoCo errors)).")
      .def("close", [](ChunkPool& p) { without_gil([&] { p.close(); }); });
}

}  // namespace vlarl
