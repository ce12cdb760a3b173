#include "host_pinning.h"

#include <stdexcept>

#include <cuda_runtime_api.h>

namespace vlarl {
namespace {

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls are not poisoned
    throw std::runtime_error(std::string(what) + " failed: " + cudaGetErrorString(err));
  }
}

}  // namespace

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

void cuda_host_register(void* ptr, std::size_t nbytes) {
  check(cudaHostRegister(ptr, nbytes, cudaHostRegisterPortable), "cudaHostRegister");
}

void cuda_host_unregister(void* ptr) { check(cudaHostUnregister(ptr), "cudaHostUnregister"); }

}  // namespace vlarl
