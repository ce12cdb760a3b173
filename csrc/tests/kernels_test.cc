// Tests of the CPU kernels' library (csrc/kernels/) without Python and without MuJoCo (this
// binary links vlarl_kernels only), meant to run under AddressSanitizer + UBSan and under
// ThreadSanitizer (tests/engine/test_sanitizers.py): the task runner on its persistent pool
// (results, thread counts, concurrent callers that grow the pool, exceptions, fork), the
// kernels' argument checks, and where the CPU has AVX512-BF16 the kernels themselves against a
// double reference, bit-identical across thread counts.
//
// usage: kernels_test
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernels/action_logprob_cpu.h"
#include "kernels/task_runner.h"

#if defined(__SANITIZE_THREAD__)
#define VLARL_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define VLARL_UNDER_TSAN 1
#endif
#endif

namespace {

int failures = 0;

#define CHECK(cond)                                                                 \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                                   \
    }                                                                               \
  } while (0)

template <typename E>
bool throws(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const E&) {
    return true;
  } catch (...) {
    return false;
  }
  return false;
}

constexpr std::int64_t kBigWork = std::int64_t(1) << 40;  // always parallel

// Every task runs exactly once and writes its own slot; returns the threads that ran tasks.
std::size_t run_and_check(std::int64_t num_tasks, int threads) {
  std::vector<std::int64_t> out(static_cast<std::size_t>(num_tasks), -1);
  std::vector<std::atomic<int>> runs(static_cast<std::size_t>(num_tasks));
  std::mutex mu;
  std::set<std::thread::id> ids;
  vlarl::run_tasks(num_tasks, kBigWork, threads, [&](std::int64_t t) {
    out[static_cast<std::size_t>(t)] = 3 * t + 1;
    runs[static_cast<std::size_t>(t)].fetch_add(1);
    std::lock_guard<std::mutex> lock(mu);
    ids.insert(std::this_thread::get_id());
  });
  for (std::int64_t t = 0; t < num_tasks; ++t) {
    CHECK(out[static_cast<std::size_t>(t)] == 3 * t + 1);
    CHECK(runs[static_cast<std::size_t>(t)].load() == 1);
  }
  return ids.size();
}

void test_runner_results_and_thread_counts() {
  CHECK(run_and_check(0, 4) == 0);
  for (int threads : {1, 2, 3, 8}) {
    for (std::int64_t tasks : {1, 5, 64, 1000}) {
      const std::size_t used = run_and_check(tasks, threads);
      CHECK(used >= 1 && used <= static_cast<std::size_t>(threads));
    }
  }
  CHECK(vlarl::kernel_pool_size() >= 8);  // grown to the largest request
  // little work runs on the caller alone
  std::thread::id who;
  vlarl::run_tasks(4, 1000, 8, [&](std::int64_t) { who = std::this_thread::get_id(); });
  CHECK(who == std::this_thread::get_id());
}

void test_runner_concurrent_callers() {
  // several threads call at once with different thread counts, growing the pool under them
  std::vector<std::thread> callers;
  std::atomic<int> bad{0};
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([c, &bad] {
      for (int i = 0; i < 50; ++i) {
        const int threads = 2 + (c + i) % (4 + c);
        std::vector<std::int64_t> out(97, 0);
        vlarl::run_tasks(97, kBigWork, threads, [&](std::int64_t t) {
          out[static_cast<std::size_t>(t)] = t * t;
        });
        for (std::int64_t t = 0; t < 97; ++t) {
          if (out[static_cast<std::size_t>(t)] != t * t) bad.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : callers) t.join();
  CHECK(bad.load() == 0);
}

void test_runner_exceptions() {
  std::atomic<int> ran{0};
  CHECK(throws<std::out_of_range>([&] {
    vlarl::run_tasks(40, kBigWork, 4, [&](std::int64_t t) {
      ran.fetch_add(1);
      if (t == 7) throw std::out_of_range("task 7");
    });
  }));
  CHECK(ran.load() >= 8);
  CHECK(run_and_check(40, 4) >= 1);  // the pool is usable afterwards
}

void test_runner_after_fork() {
#ifdef VLARL_UNDER_TSAN
  std::printf("fork test skipped under ThreadSanitizer (threads after fork are unsupported)\n");
#else
  run_and_check(64, 4);  // the parent's pool exists and has threads
  const pid_t pid = fork();
  if (pid == 0) {
    alarm(20);  // a child stuck on the parent's (absent) threads dies instead of hanging
    const int before = failures;
    run_and_check(64, 4);
    _exit(failures == before ? 0 : 1);
  }
  int status = 0;
  CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  CHECK(run_and_check(64, 4) >= 1);
#endif
}

void test_kernel_argument_errors() {
  std::vector<std::uint16_t> h(8 * 32), w(4 * 32);
  std::vector<std::int64_t> labels(8, 1);
  std::vector<float> o(8 * 4);
  auto fwd = [&](std::int64_t t, std::int64_t n, std::int64_t k, int threads) {
    vlarl::action_logprob_bf16_forward(h.data(), 32, w.data(), 32, labels.data(), t, n, k, 1.0f,
                                       o.data(), o.data(), o.data(), o.data(), threads);
  };
  CHECK(throws<std::invalid_argument>([&] { fwd(8, 0, 32, 1); }));
  CHECK(throws<std::invalid_argument>([&] { fwd(-1, 4, 32, 1); }));
  CHECK(throws<std::invalid_argument>([&] { fwd(8, 4, 32, 0); }));
  CHECK(throws<std::invalid_argument>([&] {
    vlarl::f32_bf16_gemm(nullptr, 1, 1, nullptr, 1, nullptr, 1, -1, 1, 1, 1);
  }));
  if (!vlarl::bf16_kernels_supported()) {
    CHECK(throws<std::runtime_error>([&] { fwd(8, 4, 32, 1); }));
  } else {
    labels[3] = 4;  // outside [0, 4)
    CHECK(throws<std::invalid_argument>([&] { fwd(8, 4, 32, 1); }));
  }
}

std::uint16_t bf16_bits(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  return static_cast<std::uint16_t>(u >> 16);  // x is chosen bf16-exact
}

float bf16_value(std::uint16_t b) {
  const std::uint32_t u = std::uint32_t(b) << 16;
  float x;
  std::memcpy(&x, &u, sizeof(x));
  return x;
}

void test_kernels_against_double_and_across_threads() {
  if (!vlarl::bf16_kernels_supported()) {
    std::printf("bf16 kernels skipped: this CPU has no AVX512-BF16\n");
    return;
  }
  const std::int64_t t = 163, n = 256, k = 256;  // t n k = 10.7 M: up to 5 threads
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<std::uint16_t> h(t * k), w(n * k);
  for (auto& x : h) x = bf16_bits(bf16_value(bf16_bits(normal(rng))));
  for (auto& x : w) x = bf16_bits(bf16_value(bf16_bits(0.1f * normal(rng))));
  std::vector<std::int64_t> labels(t);
  for (std::int64_t i = 0; i < t; ++i) labels[i] = (i * 97) % n;
  const float scale = 0.625f;
  std::vector<float> ref_logp(t);
  for (std::int64_t i = 0; i < t; ++i) {
    std::vector<double> z(n);
    double m = -1e300;
    for (std::int64_t b = 0; b < n; ++b) {
      double s = 0;
      for (std::int64_t l = 0; l < k; ++l) s += double(bf16_value(h[i * k + l])) * bf16_value(w[b * k + l]);
      z[b] = scale * s;
      m = std::max(m, z[b]);
    }
    double sum = 0;
    for (double v : z) sum += std::exp(v - m);
    ref_logp[i] = static_cast<float>(z[labels[i]] - m - std::log(sum));
  }
  std::vector<float> first;
  for (int threads : {1, 2, 3, 7}) {
    std::vector<float> out(4 * t);
    vlarl::action_logprob_bf16_forward(h.data(), k, w.data(), k, labels.data(), t, n, k, scale,
                                       out.data(), out.data() + t, out.data() + 2 * t,
                                       out.data() + 3 * t, threads);
    for (std::int64_t i = 0; i < t; ++i) CHECK(std::fabs(out[i] - ref_logp[i]) < 1e-4f);
    if (first.empty()) {
      first = out;
    } else {
      CHECK(std::memcmp(first.data(), out.data(), out.size() * sizeof(float)) == 0);
    }
  }
}

}  // namespace

int main() {
  test_runner_results_and_thread_counts();
  test_runner_concurrent_callers();
  test_runner_exceptions();
  test_runner_after_fork();
  test_kernel_argument_errors();
  test_kernels_against_double_and_across_threads();
  if (failures) {
    std::fprintf(stderr, "kernels_test: %d check(s) failed\n", failures);
    return 1;
  }
  std::printf("kernels_test: all checks passed\n");
  return 0;
}
