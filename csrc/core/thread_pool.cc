#include "thread_pool.h"

#include <stdexcept>
#include <string>

namespace vlarl {

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads < 1) {
    throw std::invalid_argument("num_threads must be >= 1, got " + std::to_string(num_threads));
  }
  threads_.reserve(num_threads);
  for (int w = 0; w < num_threads; ++w) {
    threads_.emplace_back([this, w] { worker_loop(w); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  start_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void ThreadPool::parallel_for(int num_tasks, const TaskFn& fn, const PollFn& poll,
                              std::chrono::milliseconds poll_interval) {
  if (num_tasks <= 0) return;
  run_job(num_tasks, false, fn, poll, poll_interval);
}

void ThreadPool::on_each_worker(const std::function<void(int)>& fn) {
  TaskFn task = [&fn](int, int worker) { fn(worker); };
  run_job(size(), true, task, {}, std::chrono::milliseconds(0));
}

void ThreadPool::run_job(int num_tasks, bool once_per_worker, const TaskFn& fn,
                         const PollFn& poll, std::chrono::milliseconds poll_interval) {
  std::lock_guard<std::mutex> job_lock(job_mu_);
  std::unique_lock<std::mutex> lock(mu_);
  job_ = &fn;
  num_tasks_ = num_tasks;
  once_per_worker_ = once_per_worker;
  next_task_.store(0, std::memory_order_relaxed);
  busy_workers_ = size();
  first_error_ = nullptr;
  ++generation_;
  start_cv_.notify_all();
  const auto all_done = [this] { return busy_workers_ == 0; };
  bool polling = static_cast<bool>(poll);
  while (polling && !done_cv_.wait_for(lock, poll_interval, all_done)) {
    lock.unlock();
    bool stop = false;
    try {
      stop = poll();
    } catch (...) {
      // fn lives on this stack frame: let the workers finish before unwinding past it.
      lock.lock();
      next_task_.store(num_tasks_);
      done_cv_.wait(lock, all_done);
      job_ = nullptr;
      first_error_ = nullptr;
      throw;
    }
    lock.lock();
    if (stop) {
      next_task_.store(num_tasks_);  // hand out no further task
      polling = false;
    }
  }
  done_cv_.wait(lock, all_done);
  job_ = nullptr;
  if (first_error_) {
    std::exception_ptr err = first_error_;
    first_error_ = nullptr;
    std::rethrow_exception(err);
  }
}

void ThreadPool::worker_loop(int worker) {
  std::uint64_t seen = 0;
  for (;;) {
    const TaskFn* job;
    int num_tasks;
    bool once;
    {
      std::unique_lock<std::mutex> lock(mu_);
      start_cv_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      job = job_;
      num_tasks = num_tasks_;
      once = once_per_worker_;
    }
    try {
      if (once) {
        (*job)(worker, worker);
      } else {
        for (int t = next_task_.fetch_add(1); t < num_tasks; t = next_task_.fetch_add(1)) {
          (*job)(t, worker);
        }
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!first_error_) first_error_ = std::current_exception();
      // drain the remaining tasks so the job ends promptly
      next_task_.store(num_tasks);
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--busy_workers_ == 0) done_cv_.notify_one();
    }
  }
}

}  // namespace vlarl
