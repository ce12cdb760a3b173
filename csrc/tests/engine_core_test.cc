// Tests of the C++ core without Python, meant to run under AddressSanitizer + UBSan and under
// ThreadSanitizer (tests/engine/test_sanitizers.py builds them with VLARL_SANITIZE). The
// concurrency cases (close during a call, calls from several threads, interrupts) are the
// ones TSan checks.
//
// usage: engine_core_test <scene.xml> <scene_with_tiny_arena.xml>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <mujoco/mujoco.h>

#include "core/env_batch.h"
#include "core/thread_pool.h"

namespace {

int failures = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                              \
    }                                                                          \
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

mjModel* load(const char* path) {
  char error[1024] = "";
  mjModel* m = mj_loadXML(path, nullptr, error, sizeof(error));
  if (!m) {
    std::fprintf(stderr, "cannot load %s: %s\n", path, error);
    std::exit(2);
  }
  return m;
}

std::vector<mjtNum> controls(const mjModel* m, int n, int call) {
  std::vector<mjtNum> u(static_cast<std::size_t>(n) * m->nu);
  for (std::size_t i = 0; i < u.size(); ++i) u[i] = std::sin(0.7 * i + 1.3 * call);
  return u;
}

// Reference: one mjData per env stepped by a plain loop.
std::vector<mjtNum> reference_qpos(const mjModel* m, int n, int calls, int nstep) {
  std::vector<mjtNum> out;
  for (int e = 0; e < n; ++e) {
    mjData* d = mj_makeData(m);
    d->qvel[0] = 0.1 * e;
    for (int c = 0; c < calls; ++c) {
      std::vector<mjtNum> u = controls(m, n, c);
      std::memcpy(d->ctrl, u.data() + static_cast<std::size_t>(e) * m->nu, sizeof(mjtNum) * m->nu);
      for (int s = 0; s < nstep; ++s) mj_step(m, d);
    }
    out.insert(out.end(), d->qpos, d->qpos + m->nq);
    mj_deleteData(d);
  }
  return out;
}

std::vector<mjtNum> engine_qpos(const mjModel* m, int n, int threads, int calls, int nstep) {
  vlarl::EnvBatch batch(m, n, threads);
  for (int e = 0; e < n; ++e) batch.data(e)->qvel[0] = 0.1 * e;
  for (int c = 0; c < calls; ++c) {
    std::vector<mjtNum> u = controls(m, n, c);
    CHECK(batch.step(u.data(), nstep, {}).empty());
  }
  std::vector<mjtNum> out;
  for (int e = 0; e < n; ++e) out.insert(out.end(), batch.data(e)->qpos, batch.data(e)->qpos + m->nq);
  return out;
}

void test_parity_and_determinism(const mjModel* m) {
  const int n = 5, calls = 4, nstep = 8;
  const std::vector<mjtNum> ref = reference_qpos(m, n, calls, nstep);
  for (int threads : {1, 2, 4}) {
    CHECK(engine_qpos(m, n, threads, calls, nstep) == ref);
  }
}

void test_views_layout(const mjModel* m) {
  vlarl::EnvBatch batch(m, 3, 2);
  const vlarl::FieldInfo* f = batch.find_field("qpos");
  CHECK(f != nullptr);
  for (int e = 0; e < 3; ++e) {
    auto* row = reinterpret_cast<mjtNum*>(batch.buffer_block() + e * batch.env_stride_bytes() + f->offset);
    CHECK(row == batch.data(e)->qpos);
  }
  CHECK(batch.find_field("no_such_field") == nullptr);
}

void test_state_round_trip(const mjModel* m) {
  vlarl::EnvBatch batch(m, 2, 2);
  const unsigned spec = mjSTATE_INTEGRATION;
  const int size = batch.state_size(spec);
  std::vector<mjtNum> u = controls(m, 2, 0);
  batch.step(u.data(), 20, {});
  std::vector<mjtNum> saved(2 * size), after(2 * size), again(2 * size);
  batch.get_state(saved.data(), spec, {});
  batch.step(nullptr, 10, {});
  batch.get_state(after.data(), spec, {});
  batch.set_state(saved.data(), false, spec, {});
  batch.step(nullptr, 10, {});
  batch.get_state(again.data(), spec, {});
  CHECK(after == again);
  // broadcast one row to a group
  batch.set_state(saved.data(), true, spec, {0, 1});
  batch.get_state(again.data(), spec, {});
  CHECK(std::equal(again.begin(), again.begin() + size, again.begin() + size));
}

void test_bad_arguments(const mjModel* m) {
  CHECK(throws<std::invalid_argument>([&] { vlarl::EnvBatch(m, 0, 1); }));
  CHECK(throws<std::invalid_argument>([&] { vlarl::EnvBatch(m, 1, 0); }));
  vlarl::EnvBatch batch(m, 2, 1);
  CHECK(throws<std::out_of_range>([&] { batch.step(nullptr, 1, {2}); }));
  CHECK(throws<std::out_of_range>([&] { batch.step(nullptr, 1, {-1}); }));
  CHECK(throws<std::invalid_argument>([&] { batch.step(nullptr, -1, {}); }));
  CHECK(throws<std::invalid_argument>([&] { batch.state_size(1u << 30); }));
  batch.close();
  CHECK(throws<std::runtime_error>([&] { batch.step(nullptr, 1, {}); }));
}

void test_unstable_env(const mjModel* m) {
  vlarl::EnvBatch batch(m, 3, 2);
  batch.data(1)->qvel[0] = 1e12;
  batch.step(nullptr, 5, {});
  CHECK(batch.status()[0] == vlarl::kEnvOk);
  CHECK(batch.status()[1] == vlarl::kEnvUnstable);
  CHECK(batch.status()[2] == vlarl::kEnvOk);
  CHECK(std::isfinite(batch.data(0)->qpos[0]));
}

void test_mujoco_error(const mjModel* roomy, const mjModel* tiny) {
  // Pile the objects up in the roomy model, then continue in the tiny-arena model.
  vlarl::EnvBatch pile(roomy, 1, 1);
  pile.step(nullptr, 600, {});
  const unsigned spec = mjSTATE_INTEGRATION;
  std::vector<mjtNum> state(pile.state_size(spec));
  pile.get_state(state.data(), spec, {});

  vlarl::EnvBatch batch(tiny, 3, 2);
  batch.set_state(state.data(), false, spec, {2});
  std::vector<int> failed = batch.step(nullptr, 5, {});
  CHECK(failed.size() == 1 && failed[0] == 2);
  CHECK(batch.status()[2] == vlarl::kEnvError);
  CHECK(batch.status_message(2).find("mj_stackAlloc") != std::string::npos);
  CHECK(batch.status()[0] == vlarl::kEnvOk);
  CHECK(batch.step(nullptr, 1, {}).empty());  // the failed env is skipped
}

void test_thread_pool() {
  vlarl::ThreadPool pool(3);
  std::vector<int> hits(1000, 0);
  pool.parallel_for(1000, [&](int t, int) { hits[t] += 1; });
  bool all_once = true;
  for (int h : hits) all_once &= (h == 1);
  CHECK(all_once);
  std::vector<int> workers(3, 0);
  pool.on_each_worker([&](int w) { workers[w] += 1; });
  CHECK(workers == std::vector<int>({1, 1, 1}));
  CHECK(throws<std::runtime_error>(
      [&] { pool.parallel_for(10, [](int t, int) { if (t == 3) throw std::runtime_error("x"); }); }));
  pool.parallel_for(4, [&](int t, int) { hits[t] += 1; });  // usable after an exception
  CHECK(hits[0] == 2);
}

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void test_pool_poll_stops_handing_out_tasks() {
  vlarl::ThreadPool pool(2);
  std::atomic<int> ran{0};
  int polls = 0;
  pool.parallel_for(
      400,
      [&](int, int) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        ran.fetch_add(1);
      },
      [&] { return ++polls >= 2; }, std::chrono::milliseconds(5));
  CHECK(polls == 2);
  CHECK(ran.load() > 0 && ran.load() < 400);
  // a poll that throws: the workers finish first, then the exception comes out
  CHECK(throws<std::runtime_error>([&] {
    pool.parallel_for(
        400, [&](int, int) { std::this_thread::sleep_for(std::chrono::milliseconds(1)); },
        [] () -> bool { throw std::runtime_error("poll"); }, std::chrono::milliseconds(2));
  }));
  std::vector<int> hits(8, 0);
  pool.parallel_for(8, [&](int t, int) { hits[t] = 1; });  // usable afterwards
  CHECK(hits == std::vector<int>(8, 1));
}

// close() from another thread while a long step runs: the step stops at an mj_step boundary
// and throws EngineClosed; nothing afterwards crashes or races (TSan).
void test_close_during_step(const mjModel* m) {
  for (int round = 0; round < 12; ++round) {
    vlarl::EnvBatch batch(m, 4, 2);
    std::atomic<int> outcome{0};  // 1 finished, 2 EngineClosed, 3 other
    std::thread caller([&] {
      try {
        for (;;) batch.step(nullptr, round % 2 ? 1000000 : 3, {});
      } catch (const vlarl::EngineClosed&) {
        outcome = 2;
      } catch (...) {
        outcome = 3;
      }
    });
    std::this_thread::sleep_for(std::chrono::microseconds(300 * round));
    const auto t0 = Clock::now();
    batch.close();
    const double waited = seconds_since(t0);
    caller.join();
    CHECK(outcome.load() == 2);
    CHECK(batch.closed());
    CHECK(waited < 2.0);  // one mj_step per worker, not the million asked for
    CHECK(throws<vlarl::EngineClosed>([&] { batch.step(nullptr, 1, {}); }));
    std::vector<mjtNum> state(batch.state_size(mjSTATE_INTEGRATION) * 4);
    CHECK(throws<vlarl::EngineClosed>(
        [&] { batch.get_state(state.data(), mjSTATE_INTEGRATION, {}); }));
    CHECK(throws<vlarl::EngineClosed>(
        [&] { batch.set_state(state.data(), true, mjSTATE_INTEGRATION, {}); }));
    batch.close();  // idempotent
    for (int e = 0; e < 4; ++e) CHECK(std::isfinite(batch.data(e)->qpos[0]));  // memory lives
  }
}

// Calls from several threads run one at a time: with every env starting from the same state
// and stepped alike, a get_state between calls always sees identical rows (a read in the
// middle of a step would see some envs a step ahead).
void test_calls_from_several_threads_are_atomic(const mjModel* m) {
  const int n = 4;
  vlarl::EnvBatch batch(m, n, 2);
  const unsigned spec = mjSTATE_INTEGRATION;
  const int size = batch.state_size(spec);
  std::vector<mjtNum> start(size);
  batch.get_state(start.data(), spec, {0});
  std::atomic<bool> stop{false};
  std::atomic<int> torn{0}, reads{0};
  std::thread stepper([&] {
    while (!stop.load()) batch.step(nullptr, 7, {});
  });
  std::thread resetter([&] {
    for (int i = 0; i < 40 && !stop.load(); ++i) {
      batch.set_state(start.data(), true, spec, {});
      batch.forward({});
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
  });
  std::vector<mjtNum> states(static_cast<std::size_t>(n) * size);
  const auto t0 = Clock::now();
  while (seconds_since(t0) < 0.5) {
    batch.get_state(states.data(), spec, {});
    reads.fetch_add(1);
    for (int e = 1; e < n; ++e) {
      if (!std::equal(states.begin(), states.begin() + size, states.begin() + e * size)) {
        torn.fetch_add(1);
      }
    }
    (void)batch.status_message(0);
  }
  stop = true;
  resetter.join();
  stepper.join();
  CHECK(reads.load() > 0);
  CHECK(torn.load() == 0);
  batch.close();
}

// The interrupt check stops a long call within about one mj_step per worker; the batch then
// keeps working and the envs keep the steps they ran.
void test_interrupt(const mjModel* m) {
  vlarl::EnvBatch batch(m, 3, 2);
  std::atomic<bool> fire{false};
  batch.set_interrupt_check([&] { return fire.load(); }, 2);
  std::thread timer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    fire = true;
  });
  const auto t0 = Clock::now();
  CHECK(throws<vlarl::Interrupted>([&] { batch.step(nullptr, 100000000, {}); }));
  const double took = seconds_since(t0);
  timer.join();
  CHECK(took < 3.0);
  fire = false;
  const double before = batch.time()[0];
  CHECK(before > 0.0);
  CHECK(batch.step(nullptr, 2, {}).empty());
  CHECK(batch.time()[0] > before);
  CHECK(batch.status()[0] == vlarl::kEnvOk);

  // close() from inside the check (a signal handler on the calling thread): the running call
  // stops with EngineClosed and the close completes when the call lets its lock go.
  batch.set_interrupt_check([&] {
    batch.close();
    return false;
  }, 1);
  CHECK(throws<vlarl::EngineClosed>([&] { batch.step(nullptr, 100000000, {}); }));
  CHECK(batch.closed());
  CHECK(batch.num_threads() == 0);
  CHECK(throws<vlarl::EngineClosed>([&] { batch.forward({}); }));
}

// Another call from inside the check (same thread) is refused, never a self-deadlock.
void test_reentrant_call_is_refused(const mjModel* m) {
  vlarl::EnvBatch batch(m, 2, 1);
  std::vector<mjtNum> state(static_cast<std::size_t>(batch.state_size(mjSTATE_INTEGRATION)) * 2);
  batch.set_interrupt_check([&] {
    batch.get_state(state.data(), mjSTATE_INTEGRATION, {});
    return false;
  }, 1);
  CHECK(throws<std::logic_error>([&] { batch.step(nullptr, 100000000, {}); }));
  batch.set_interrupt_check({}, 10);
  CHECK(batch.step(nullptr, 1, {}).empty());
}

void test_create_destroy_cycles(const mjModel* m) {
  for (int i = 0; i < 20; ++i) {
    vlarl::EnvBatch batch(m, 4, 2);
    batch.step(nullptr, 2, {});
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s <scene.xml> <scene_with_tiny_arena.xml>\n", argv[0]);
    return 2;
  }
  mjModel* m = load(argv[1]);
  mjModel* tiny = load(argv[2]);
  test_thread_pool();
  test_parity_and_determinism(m);
  test_views_layout(m);
  test_state_round_trip(m);
  test_bad_arguments(m);
  test_unstable_env(m);
  test_mujoco_error(m, tiny);
  test_create_destroy_cycles(m);
  test_pool_poll_stops_handing_out_tasks();
  test_close_during_step(m);
  test_calls_from_several_threads_are_atomic(m);
  test_interrupt(m);
  test_reentrant_call_is_refused(m);
  mj_deleteModel(tiny);
  mj_deleteModel(m);
  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("engine_core_test: all checks passed\n");
  return 0;
}
