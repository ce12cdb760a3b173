// The extension module vlarl_fast._cpu_kernels: the Python face of the CPU kernels of
// vlarl_fast.kernels (csrc/kernels/). It links neither MuJoCo nor the physics core, so that
// vlarl_fast.kernels loads it (kernels/_native_loader.py) where the engine is absent. The
// kernels take raw addresses: the Python wrapper (kernels/cpu_native.py) checks dtypes, devices,
// shapes and strides of the torch tensors, so this module needs no libtorch. The GIL is released
// while a kernel runs.
#include <cstdint>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <pybind11/pybind11.h>

#include "kernels/action_logprob_cpu.h"
#include "kernels/task_runner.h"

namespace py = pybind11;

namespace vlarl {
namespace {

template <typename T>
T* ptr(std::uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

// run_tasks on a known workload: task t writes t * t + 1 into its own slot. Returns how many
// distinct threads ran tasks; throws if any slot is wrong. For tests of the pool (fork safety).
int task_runner_check(std::int64_t num_tasks, int num_threads) {
  std::vector<std::int64_t> out(static_cast<std::size_t>(num_tasks), -1);
  std::mutex mu;
  std::set<std::thread::id> ids;
  run_tasks(num_tasks, std::int64_t(1) << 40, num_threads, [&](std::int64_t t) {
    out[static_cast<std::size_t>(t)] = t * t + 1;
    std::lock_guard<std::mutex> lock(mu);
    ids.insert(std::this_thread::get_id());
  });
  for (std::int64_t t = 0; t < num_tasks; ++t) {
    if (out[static_cast<std::size_t>(t)] != t * t + 1) {
      throw std::runtime_error("task_runner_check: task " + std::to_string(t) + " did not run");
    }
  }
  return static_cast<int>(ids.size());
}

}  // namespace
}  // namespace vlarl

PYBIND11_MODULE(_cpu_kernels, m) {
  using namespace vlarl;
  m.doc() = "vlarl-fast CPU kernels of vlarl_fast.kernels (no MuJoCo, no physics core)";
  m.def(
      "_task_runner_check",
      [](std::int64_t num_tasks, int num_threads) {
        py::gil_scoped_release release;
        return task_runner_check(num_tasks, num_threads);
      },
      py::arg("num_tasks"), py::arg("num_threads"),
      "Runs num_tasks trivial tasks on the kernel pool with num_threads threads; returns the "
      "number of distinct threads that ran them (tests only).");
  m.def("_kernel_pool_size", &kernel_pool_size,
        "Threads of the kernel pool now (0 before the first parallel call; tests only).");
  m.def("bf16_kernels_supported", &bf16_kernels_supported,
        "True when the AVX512-BF16 kernels of the action log-prob can run on this CPU.");
  m.def(
      "action_logprob_bf16_forward",
      [](std::uintptr_t h, std::int64_t ldh, std::uintptr_t w, std::int64_t ldw,
         std::uintptr_t labels, std::int64_t tokens, std::int64_t bins, std::int64_t hidden,
         float scale, std::uintptr_t logp, std::uintptr_t entropy, std::uintptr_t row_max,
         std::uintptr_t row_log_sum, int num_threads, std::uintptr_t z_out, std::int64_t ld_out) {
        py::gil_scoped_release release;
        action_logprob_bf16_forward(ptr<const std::uint16_t>(h), ldh, ptr<const std::uint16_t>(w),
                                    ldw, ptr<const std::int64_t>(labels), tokens, bins, hidden,
                                    scale, ptr<float>(logp), ptr<float>(entropy),
                                    ptr<float>(row_max), ptr<float>(row_log_sum), num_threads,
                                    ptr<float>(z_out), ld_out);
      },
      py::arg("h"), py::arg("ldh"), py::arg("w"), py::arg("ldw"), py::arg("labels"),
      py::arg("tokens"), py::arg("bins"), py::arg("hidden"), py::arg("scale"), py::arg("logp"),
      py::arg("entropy"), py::arg("row_max"), py::arg("row_log_sum"), py::arg("num_threads"),
      py::arg("z_out") = 0, py::arg("ld_out") = 0,
      "bf16 h [tokens, hidden], w [bins, hidden], int64 labels -> fp32 logp, entropy, row max "
      "and log-sum-exp of s h w^T [tokens]; z_out (address 0: none) receives z [tokens, bins].");
  m.def(
      "action_logprob_bf16_grad_logits",
      [](std::uintptr_t h, std::int64_t ldh, std::uintptr_t w, std::int64_t ldw,
         std::uintptr_t labels, std::uintptr_t row_max, std::uintptr_t row_log_sum,
         std::uintptr_t g_logp, std::uintptr_t g_ent, std::int64_t tokens, std::int64_t bins,
         std::int64_t hidden, float scale, std::uintptr_t grad_z, std::int64_t ldg,
         int num_threads, std::uintptr_t z_in, std::int64_t ld_in) {
        py::gil_scoped_release release;
        action_logprob_bf16_grad_logits(
            ptr<const std::uint16_t>(h), ldh, ptr<const std::uint16_t>(w), ldw,
            ptr<const std::int64_t>(labels), ptr<const float>(row_max),
            ptr<const float>(row_log_sum), ptr<const float>(g_logp), ptr<const float>(g_ent),
            tokens, bins, hidden, scale, ptr<float>(grad_z), ldg, num_threads,
            ptr<const float>(z_in), ld_in);
      },
      py::arg("h"), py::arg("ldh"), py::arg("w"), py::arg("ldw"), py::arg("labels"),
      py::arg("row_max"), py::arg("row_log_sum"), py::arg("g_logp"), py::arg("g_ent"),
      py::arg("tokens"), py::arg("bins"), py::arg("hidden"), py::arg("scale"),
      py::arg("grad_z"), py::arg("ldg"), py::arg("num_threads"), py::arg("z_in") = 0,
      py::arg("ld_in") = 0,
      "G = s dL/dz [tokens, bins] fp32 from the forward's row statistics and the upstream fp32 "
      "gradients (address 0: none).");
  m.def(
      "f32_bf16_gemm",
      [](std::uintptr_t a, std::int64_t a_si, std::int64_t a_sl, std::uintptr_t b,
         std::int64_t ldb, std::uintptr_t out, std::int64_t ldo, std::int64_t rows,
         std::int64_t cols, std::int64_t depth, int num_threads) {
        py::gil_scoped_release release;
        f32_bf16_gemm(ptr<const float>(a), a_si, a_sl, ptr<const std::uint16_t>(b), ldb,
                      ptr<std::uint16_t>(out), ldo, rows, cols, depth, num_threads);
      },
      py::arg("a"), py::arg("a_si"), py::arg("a_sl"), py::arg("b"), py::arg("ldb"),
      py::arg("out"), py::arg("ldo"), py::arg("rows"), py::arg("cols"), py::arg("depth"),
      py::arg("num_threads"),
      "out[i, j] = bf16(sum_l a[i, l] b[l, j]): fp32 a [rows, depth] with element strides "
      "(a_si, a_sl), bf16 b [depth, cols] (row stride ldb), fp32 accumulation, bf16 out.");
}
