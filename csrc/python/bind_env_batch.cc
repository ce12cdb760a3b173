// Python face of EnvBatch: numpy views of engine-owned memory (no copies), GIL released around
// every call that touches env state (they take the engine's call lock; see without_gil),
// MuJoCo/C++ errors turned into Python exceptions, Python signals polled during long calls.
#include <cstdint>
#include <memory>
#include <string>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "../core/chunk_pool.h"
#include "../core/env_batch.h"
#include "../core/mujoco_guard.h"
#include "../core/raw_timing.h"
#include "bindings.h"

namespace py = pybind11;

namespace vlarl {
namespace {

using BatchPtr = std::shared_ptr<EnvBatch>;

// A capsule that keeps the engine (and so its memory) alive while a numpy view exists.
py::capsule keep_alive(const BatchPtr& batch) {
  return py::capsule(new BatchPtr(batch),
                     [](void* p) { delete static_cast<BatchPtr*>(p); });
}

py::dtype dtype_of(FieldType t) {
  switch (t) {
    case FieldType::kFloat64: return py::dtype::of<double>();
    case FieldType::kInt32: return py::dtype::of<std::int32_t>();
    case FieldType::kUInt8: return py::dtype::of<std::uint8_t>();
    case FieldType::kUIntPtr: return py::dtype::of<std::uintptr_t>();
  }
  throw std::logic_error("unknown field type");
}

py::array field_view(const BatchPtr& batch, const std::string& name) {
  const FieldInfo* f = batch->find_field(name);
  if (!f) {
    throw py::key_error("mjData has no array field named '" + name +
                        "' (see Engine.field_names())");
  }
  std::vector<py::ssize_t> shape{batch->num_envs(), f->rows};
  std::vector<py::ssize_t> strides{static_cast<py::ssize_t>(batch->env_stride_bytes()),
                                   static_cast<py::ssize_t>(f->elem_size * f->cols)};
  if (f->cols != 1) {
    shape.push_back(f->cols);
    strides.push_back(static_cast<py::ssize_t>(f->elem_size));
  }
  return py::array(dtype_of(f->type), shape, strides, batch->buffer_block() + f->offset,
                   keep_alive(batch));
}

template <typename T>
py::array vector_view(const BatchPtr& batch, T* data, bool writeable) {
  py::array a(py::dtype::of<T>(), {batch->num_envs()}, {static_cast<py::ssize_t>(sizeof(T))},
              data, keep_alive(batch));
  if (!writeable) {
    py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  }
  return a;
}

// The thread Python runs signal handlers on, and the exception a handler raised during a call.
unsigned long main_thread_ident = 0;

struct KeptError {
  PyObject* type = nullptr;
  PyObject* value = nullptr;
  PyObject* traceback = nullptr;
};
thread_local KeptError kept_error;

bool interpreter_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing();
#else
  return _Py_IsFinalizing();
#endif
}

}  // namespace

bool python_signals_pending() {
  if (main_thread_ident == 0 || PyThread_get_thread_ident() != main_thread_ident) return false;
  if (!Py_IsInitialized() || interpreter_finalizing()) return false;
  py::gil_scoped_acquire gil;
  if (PyErr_CheckSignals() == 0) return false;
  KeptError& k = kept_error;
  Py_XDECREF(k.type);
  Py_XDECREF(k.value);
  Py_XDECREF(k.traceback);
  PyErr_Fetch(&k.type, &k.value, &k.traceback);
  return true;
}

void raise_interrupted(const Interrupted& e) {
  KeptError& k = kept_error;
  if (k.type) {
    PyErr_Restore(k.type, k.value, k.traceback);
    k = KeptError{};
  } else {
    PyErr_SetString(PyExc_KeyboardInterrupt, e.what());
  }
  throw py::error_already_set();
}

std::vector<int> ids_from_py(const py::object& env_ids) {
  if (env_ids.is_none()) return {};
  auto arr = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(env_ids);
  if (!arr || arr.ndim() != 1) {
    throw py::type_error("env_ids must be a 1-D sequence of ints");
  }
  std::vector<int> ids(arr.size());
  for (py::ssize_t i = 0; i < arr.size(); ++i) ids[i] = static_cast<int>(arr.at(i));
  if (ids.empty()) throw py::value_error("env_ids is empty; pass None for all envs");
  return ids;
}

void bind_env_batch(py::module_& m) {
  py::register_exception<MujocoError>(m, "MujocoError", PyExc_RuntimeError);
  py::register_exception<EngineClosed>(m, "EngineClosedError", PyExc_RuntimeError);
  main_thread_ident =
      py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();

  m.def(
      "time_raw_mj_step",
      [](std::uintptr_t model_address, py::object state, int nstep, int num_datas) {
        if (model_address == 0) throw py::value_error("model address is null");
        const mjModel* model = reinterpret_cast<const mjModel*>(model_address);
        py::array_t<double, py::array::c_style | py::array::forcecast> st;
        const mjtNum* state_ptr = nullptr;
        if (!state.is_none()) {
          st = state.cast<py::array_t<double, py::array::c_style | py::array::forcecast>>();
          if (st.size() != mj_stateSize(model, mjSTATE_INTEGRATION)) {
            throw py::value_error("state must have mj_stateSize(mjSTATE_INTEGRATION) entries");
          }
          state_ptr = st.data();
        }
        py::gil_scoped_release nogil;
        return time_raw_mj_step(model, state_ptr, nstep, num_datas);
      },
      py::arg("model_address"), py::arg("state"), py::arg("nstep"), py::arg("num_datas") = 1,
      "Seconds per mj_step in a bare C loop on one thread (the physics limit).");

  py::class_<EnvBatch, BatchPtr>(m, "EnvBatch")
      .def(py::init([](std::uintptr_t model_address, int num_envs, int num_threads) {
             if (model_address == 0) throw py::value_error("model address is null");
             const auto* model = reinterpret_cast<const mjModel*>(model_address);
             BatchPtr b = without_gil([&] {
               return holder_releasing_gil(new EnvBatch(model, num_envs, num_threads));
             });
             b->set_interrupt_check(&python_signals_pending);
             return b;
           }),
           py::arg("model_address"), py::arg("num_envs"), py::arg("num_threads"))
      .def(py::init([](std::uintptr_t model_address, int num_envs,
                       const std::shared_ptr<ChunkPool>& pool) {
             if (model_address == 0) throw py::value_error("model address is null");
             if (pool->closed()) throw EngineClosed("EnvBatch: the pool is closed");
             const auto* model = reinterpret_cast<const mjModel*>(model_address);
             BatchPtr b = without_gil([&] {
               return holder_releasing_gil(new EnvBatch(model, num_envs, pool->threads()));
             });
             b->set_interrupt_check(&python_signals_pending);
             return b;
           }),
           py::arg("model_address"), py::arg("num_envs"), py::arg("pool"),
           "An EnvBatch on a ChunkPool's shared worker threads.")
      .def("close", [](EnvBatch& b) { without_gil([&] { b.close(); }); },
           "Stops a running call at its next step boundary, waits for it, frees the GL "
           "contexts and the workers. Views keep the memory alive.")
      .def_property_readonly("closed", &EnvBatch::closed)
      .def_property_readonly("num_envs", &EnvBatch::num_envs)
      .def_property_readonly("num_threads", &EnvBatch::num_threads)
      .def_property_readonly("nq", [](const EnvBatch& b) { return b.model()->nq; })
      .def_property_readonly("nv", [](const EnvBatch& b) { return b.model()->nv; })
      .def_property_readonly("nu", [](const EnvBatch& b) { return b.model()->nu; })
      .def_property_readonly("na", [](const EnvBatch& b) { return b.model()->na; })
      .def_property_readonly("timestep", [](const EnvBatch& b) { return b.model()->opt.timestep; })
      .def_property_readonly("model_address",
                             [](const EnvBatch& b) {
                               return reinterpret_cast<std::uintptr_t>(b.model());
                             })
      .def("data_address",
           [](EnvBatch& b, int env) {
             b.resolve_ids({env});
             return reinterpret_cast<std::uintptr_t>(b.data(env));
           })
      .def(
          "step",
          [](EnvBatch& b, py::object ctrl, int nstep, py::object env_ids) {
            std::vector<int> ids = ids_from_py(env_ids);
            const mjtNum* ctrl_ptr = nullptr;
            py::array_t<double, py::array::c_style> ctrl_arr;
            if (!ctrl.is_none()) {
              ctrl_arr = ctrl.cast<py::array_t<double, py::array::c_style>>();
              ctrl_ptr = ctrl_arr.data();
            }
            return without_gil([&] { return b.step(ctrl_ptr, nstep, ids); });
          },
          py::arg("ctrl"), py::arg("nstep"), py::arg("env_ids") = py::none(),
          "ctrl: [len(env_ids), nu] float64 C-contiguous (validated by the Python layer) or None."
          " Returns the ids of envs that hit a MuJoCo error.")
      .def(
          "forward",
          [](EnvBatch& b, py::object env_ids) {
            std::vector<int> ids = ids_from_py(env_ids);
            without_gil([&] { b.forward(ids); });
          },
          py::arg("env_ids") = py::none())
      .def("state_size", &EnvBatch::state_size, py::arg("spec"))
      .def(
          "get_state",
          [](EnvBatch& b, unsigned int spec, py::object env_ids) {
            std::vector<int> ids = b.resolve_ids(ids_from_py(env_ids));
            const int size = b.state_size(spec);
            py::array_t<double> out({static_cast<py::ssize_t>(ids.size()),
                                     static_cast<py::ssize_t>(size)});
            double* dst = out.mutable_data();
            without_gil([&] { b.get_state(dst, spec, ids); });
            return out;
          },
          py::arg("spec"), py::arg("env_ids") = py::none())
      .def(
          "set_state",
          [](EnvBatch& b, py::array_t<double, py::array::c_style> states, unsigned int spec,
             py::object env_ids) {
            std::vector<int> ids = b.resolve_ids(ids_from_py(env_ids));
            const py::ssize_t size = b.state_size(spec);
            const bool broadcast = states.ndim() == 1;
            if (broadcast ? states.shape(0) != size
                          : (states.ndim() != 2 || states.shape(0) !=
                                 static_cast<py::ssize_t>(ids.size()) ||
                             states.shape(1) != size)) {
              throw py::value_error("states must have shape [" + std::to_string(size) + "] or [" +
                                    std::to_string(ids.size()) + ", " + std::to_string(size) +
                                    "] for this spec");
            }
            const double* src = states.data();
            without_gil([&] { b.set_state(src, broadcast, spec, ids); });
          },
          py::arg("states"), py::arg("spec"), py::arg("env_ids") = py::none())
      .def("field", [](const BatchPtr& b, const std::string& name) { return field_view(b, name); },
           py::arg("name"))
      .def("field_names",
           [](const EnvBatch& b) {
             std::vector<std::string> names;
             for (const auto& f : b.fields()) names.push_back(f.name);
             return names;
           })
      .def_property_readonly("status",
                             [](const BatchPtr& b) { return vector_view(b, b->status(), false); })
      .def_property_readonly("time",
                             [](const BatchPtr& b) { return vector_view(b, b->time(), false); })
      .def("status_message", [](EnvBatch& b, int env) {
        b.resolve_ids({env});
        return without_gil([&] { return b.status_message(env); });
      });
}

}  // namespace vlarl
