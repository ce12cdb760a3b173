// A fixed pool of worker threads that lives as long as its owner (no thread creation per call).
//
// parallel_for(n, fn) runs fn(task, worker) for every task in [0, n) and blocks until all are
// done; tasks are claimed dynamically, so results must not depend on which worker runs a task
// (each environment's work is independent, which makes the engine deterministic across thread
// counts). on_each_worker(fn) runs fn(worker) exactly once on every worker thread: per-thread
// resources such as an EGL context are created and freed that way.
//
// While a job runs, the calling thread only waits; given a `poll` function it wakes every
// `poll_interval` to call it (on the calling thread, no pool lock held). When poll returns
// true no further task is handed out; tasks already started run to their end (a task that
// should stop early checks its own flag). The engine polls for Python signals this way.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace vlarl {

class ThreadPool {
 public:
  using TaskFn = std::function<void(int task, int worker)>;

  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(threads_.size()); }

  using PollFn = std::function<bool()>;

  // Runs fn(task, worker) for task in [0, num_tasks). The first exception thrown by fn is
  // rethrown here after every worker has finished the job. poll: see the file comment; an
  // exception thrown by poll stops the job too and is rethrown once every worker is done.
  void parallel_for(int num_tasks, const TaskFn& fn, const PollFn& poll = {},
                    std::chrono::milliseconds poll_interval = std::chrono::milliseconds(10));

  // Runs fn(worker) once on each worker thread.
  void on_each_worker(const std::function<void(int worker)>& fn);

 private:
  void run_job(int num_tasks, bool once_per_worker, const TaskFn& fn, const PollFn& poll,
               std::chrono::milliseconds poll_interval);
  void worker_loop(int worker);

  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable start_cv_;
  std::condition_variable done_cv_;
  std::mutex job_mu_;  // serialises callers of parallel_for
  const TaskFn* job_ = nullptr;
  int num_tasks_ = 0;
  bool once_per_worker_ = false;
  std::atomic<int> next_task_{0};
  int busy_workers_ = 0;
  std::uint64_t generation_ = 0;
  bool stopping_ = false;
  std::exception_ptr first_error_;
};

}  // namespace vlarl
