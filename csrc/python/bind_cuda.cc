// CUDA helpers for Python; present only in builds with a CUDA toolkit (VLARL_WITH_CUDA).
#include <cstdint>

#include <pybind11/pybind11.h>

#include "bindings.h"
#ifdef VLARL_WITH_CUDA
#include "../cuda/host_pinning.h"
#endif

namespace py = pybind11;

namespace vlarl {

void bind_cuda(py::module_& m) {
#ifdef VLARL_WITH_CUDA
  m.def("cuda_device_count", &cuda_device_count);
  m.def(
      "cuda_host_register",
      [](std::uintptr_t address, std::size_t nbytes) {
        cuda_host_register(reinterpret_cast<void*>(address), nbytes);
      },
      py::arg("address"), py::arg("nbytes"), "Page-lock host memory (cudaHostRegister).");
  m.def(
      "cuda_host_unregister",
      [](std::uintptr_t address) { cuda_host_unregister(reinterpret_cast<void*>(address)); },
      py::arg("address"));
#else
  m.def("cuda_device_count", [] { return 0; },
        "0: this build has no CUDA support (no CUDA toolkit was found when it was compiled)");
#endif
}

}  // namespace vlarl
