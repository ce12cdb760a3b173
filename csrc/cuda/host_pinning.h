// Page-locks engine-owned host buffers (rendered frames) so that copies to the GPU run
// asynchronously at full PCIe bandwidth and overlap with simulation. Compiled only where a CUDA
// toolkit is found (VLARL_WITH_CUDA); plain C++ interface, no CUDA types.
#pragma once

#include <cstddef>
#include <string>

namespace vlarl {

// Number of CUDA devices visible (0 when there is no driver or device).
int cuda_device_count();

// cudaHostRegister(ptr, nbytes, portable). Throws std::runtime_error with CUDA's message.
void cuda_host_register(void* ptr, std::size_t nbytes);

// cudaHostUnregister(ptr). Throws std::runtime_error with CUDA's message.
void cuda_host_unregister(void* ptr);

}  // namespace vlarl
