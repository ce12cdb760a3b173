#include "task_runner.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <memory>
#include <mutex>

#include "core/thread_pool.h"

namespace vlarl {
namespace {

// Below this many multiply-adds per thread, starting one costs more than it saves.
constexpr int kWorkPerThreadLog2 = 21;

struct PoolRegistry {
  std::mutex mu;
  std::shared_ptr<ThreadPool> pool;  // guarded by mu
};

void forget_pool_in_child();

// Never destroyed: worker threads blocked in the pool at exit are ended by the process exit,
// not joined by a static destructor that may run after Python has finalised.
PoolRegistry& registry() {
  static PoolRegistry* r = [] {
    auto* created = new PoolRegistry;
    pthread_atfork([] { registry().mu.lock(); }, [] { registry().mu.unlock(); },
                   forget_pool_in_child);
    return created;
  }();
  return *r;
}

// In a forked child the pool's threads are gone and its state may be mid-job: leak it without
// touching it, and unlock the registry (locked by the prepare handler).
void forget_pool_in_child() {
  PoolRegistry& r = registry();
  new std::shared_ptr<ThreadPool>(std::move(r.pool));  // leaked on purpose
  r.pool = nullptr;
  r.mu.unlock();
}

std::shared_ptr<ThreadPool> pool_with_at_least(int threads) {
  PoolRegistry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  if (!r.pool || r.pool->size() < threads) r.pool = std::make_shared<ThreadPool>(threads);
  return r.pool;
}

}  // namespace

void run_tasks(std::int64_t num_tasks, std::int64_t work, int num_threads,
               const std::function<void(std::int64_t)>& task) {
  const int threads = static_cast<int>(std::min<std::int64_t>(
      {std::max(num_threads, 1), num_tasks,
       std::max<std::int64_t>(1, work >> kWorkPerThreadLog2)}));
  if (threads <= 1) {
    for (std::int64_t t = 0; t < num_tasks; ++t) task(t);
    return;
  }
  const std::shared_ptr<ThreadPool> pool = pool_with_at_least(threads);
  std::atomic<std::int64_t> next{0};
  // `threads` claim loops; a loop whose task throws stops claiming and the pool rethrows.
  pool->parallel_for(threads, [&](int, int) {
    for (std::int64_t t = next.fetch_add(1); t < num_tasks; t = next.fetch_add(1)) task(t);
  });
}

int kernel_pool_size() {
  PoolRegistry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  return r.pool ? r.pool->size() : 0;
}

}  // namespace vlarl
