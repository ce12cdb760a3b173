// The only translation units that include pybind11 live in this folder. module.cc declares the
// extension module; each bind_*.cc adds one part of the core.
#include <pybind11/pybind11.h>

#include <mujoco/mujoco.h>

#include "bindings.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "vlarl-fast native rollout core";
  m.attr("MUJOCO_VERSION_BUILT") = mjVERSION_HEADER;
  m.def("mujoco_version_linked", [] { return mj_version(); },
        "mj_version() of the libmujoco this module loaded");
#ifdef VLARL_WITH_CUDA
  m.attr("CUDA_ENABLED") = true;
#else
  m.attr("CUDA_ENABLED") = false;
#endif
  vlarl::bind_env_batch(m);
  vlarl::bind_render(m);
  vlarl::bind_control(m);
  vlarl::bind_cuda(m);
  vlarl::bind_chunk_pool(m);
}
