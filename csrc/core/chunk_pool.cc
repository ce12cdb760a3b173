#include "chunk_pool.h"

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>
#include <utility>

namespace vlarl {

struct ChunkPool::Job {
  std::vector<ChunkPart> parts;
  int K = 0;
  std::vector<std::pair<int, int>> tasks;  // (part, index in part), one per env
  std::vector<std::int64_t> tags;           // every env's tag
  std::vector<EnvBatch*> batches;           // distinct, in address order (the lock order)
  std::atomic<bool> cancel{false};          // recv was interrupted: stop at the next step
};

ChunkPool::ChunkPool(int num_threads) {
  if (num_threads < 1) {
    throw std::invalid_argument("num_threads must be >= 1, got " + std::to_string(num_threads));
  }
  threads_ = std::make_shared<ThreadPool>(num_threads);
  dispatcher_ = std::thread([this] { dispatch_loop(); });
}

ChunkPool::~ChunkPool() { close(); }

bool ChunkPool::closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stopping_;
}

int ChunkPool::in_flight() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(flying_.size());
}

void ChunkPool::send(std::vector<ChunkPart> parts, int K) {
  auto job = std::make_shared<Job>();
  job->K = K;
  for (std::size_t p = 0; p < parts.size(); ++p) {
    ChunkPart& part = parts[p];
    if (!part.runner) throw std::invalid_argument("send: part " + std::to_string(p) + " has no runner");
    EnvBatch* batch = part.runner->batch().get();
    if (batch->closed()) throw EngineClosed("send: the engine is closed");
    if (!batch->uses_pool(threads_.get())) {
      throw std::invalid_argument("send: part " + std::to_string(p) +
                                  "'s engine was not built on this pool");
    }
    part.runner->check_run_args(K, part.out, part.mode, &part.frames);
    if (!part.envs.empty()) batch->resolve_ids(part.envs);
    std::vector<int> sorted = part.envs;
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
      throw std::invalid_argument("send: part " + std::to_string(p) + " has duplicate env ids");
    }
    if (part.tags.size() != part.envs.size()) {
      throw std::invalid_argument("send: part " + std::to_string(p) + " has " +
                                  std::to_string(part.tags.size()) + " tags for " +
                                  std::to_string(part.envs.size()) + " envs");
    }
    const std::size_t want = part.envs.size() * K * part.runner->action_dim();
    if (part.actions.size() != want) {
      throw std::invalid_argument("send: part " + std::to_string(p) + " has " +
                                  std::to_string(part.actions.size()) + " action values, expected " +
                                  std::to_string(want));
    }
    for (std::size_t i = 0; i < part.envs.size(); ++i) {
      job->tasks.emplace_back(static_cast<int>(p), static_cast<int>(i));
      job->tags.push_back(part.tags[i]);
    }
    if (std::find(job->batches.begin(), job->batches.end(), batch) == job->batches.end()) {
      job->batches.push_back(batch);
    }
  }
  std::sort(job->batches.begin(), job->batches.end());
  job->parts = std::move(parts);
  if (job->tasks.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) throw EngineClosed("send: the pool is closed");
  std::set<std::int64_t> seen;
  for (std::int64_t tag : job->tags) {
    if (flying_.count(tag) || !seen.insert(tag).second) {
      throw std::invalid_argument("send: env " + std::to_string(tag) +
                                  " is already in flight (recv it before sending it again)");
    }
  }
  flying_.insert(job->tags.begin(), job->tags.end());
  queue_.push_back(std::move(job));
  cv_.notify_all();
}

void ChunkPool::run_job(Job& job) {
  std::vector<CallLock> locks;
  locks.reserve(job.batches.size());
  for (EnvBatch* b : job.batches) locks.push_back(b->lock_call("step_chunk"));
  for (auto& part : job.parts) {
    if (part.check) part.check();
  }
  std::vector<const CallLock*> held;
  for (const auto& l : locks) held.push_back(&l);
  const int K = job.K;
  EnvBatch::parallel_many(job.batches, held, static_cast<int>(job.tasks.size()),
                          [&](int task, int worker) {
    const auto [p, i] = job.tasks[task];
    ChunkPart& part = job.parts[p];
    if (job.cancel.load() || part.runner->batch()->cancelled()) return;
    const double* a = part.actions.data() +
                      static_cast<std::size_t>(i) * K * part.runner->action_dim();
    const bool ok = part.runner->run_env(part.envs[i], worker, a, K, part.out, part.mode,
                                         &part.frames);
    // Stopped early by close() or an interrupt: the job fails, the env is not reported.
    if (job.cancel.load() || part.runner->batch()->cancelled()) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ready_.push_back(part.tags[i]);
      if (!ok) ready_failed_.push_back(part.tags[i]);
    }
    cv_.notify_all();
  }, "step_chunk");
}

void ChunkPool::dispatch_loop() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      job = queue_.front();
      queue_.pop_front();
      running_ = job;
    }
    std::exception_ptr error;
    try {
      run_job(*job);
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      running_.reset();
      if (error) {  // the job's envs leave the flight; recv rethrows (unless it interrupted)
        const std::set<std::int64_t> mine(job->tags.begin(), job->tags.end());
        for (std::int64_t tag : job->tags) flying_.erase(tag);
        const auto gone = [&mine](std::int64_t t) { return mine.count(t) > 0; };
        ready_.erase(std::remove_if(ready_.begin(), ready_.end(), gone), ready_.end());
        ready_failed_.erase(std::remove_if(ready_failed_.begin(), ready_failed_.end(), gone),
                            ready_failed_.end());
        if (!job->cancel.load()) error_ = error;
      }
    }
    cv_.notify_all();
  }
}

ChunkPool::Received ChunkPool::recv(int min_envs, const std::function<bool()>& poll,
                                    int interval_ms) {
  if (min_envs < 0) {
    throw std::invalid_argument("min_envs must be >= 0, got " + std::to_string(min_envs));
  }
  const auto interval = std::chrono::milliseconds(interval_ms < 1 ? 1 : interval_ms);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (error_) {
      std::exception_ptr e = error_;
      error_ = nullptr;
      std::rethrow_exception(e);
    }
    const std::size_t need = std::min<std::size_t>(min_envs, flying_.size());
    if (ready_.size() >= need) {
      Received r;
      r.tags.swap(ready_);
      r.failed.swap(ready_failed_);
      for (std::int64_t tag : r.tags) flying_.erase(tag);
      return r;
    }
    cv_.wait_for(lock, interval);
    if (!poll) continue;
    lock.unlock();
    const bool fired = poll();
    lock.lock();
    if (!fired) continue;
    // Interrupted: drop queued jobs, stop the running one at its next control step.
    queue_.clear();
    if (running_) {
      running_->cancel.store(true);
      for (EnvBatch* b : running_->batches) b->request_interrupt();
    }
    cv_.wait(lock, [this] { return !running_; });
    flying_.clear();
    ready_.clear();
    ready_failed_.clear();
    error_ = nullptr;
    throw Interrupted("recv: interrupted");
  }
}

void ChunkPool::close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !dispatcher_.joinable()) return;
    stopping_ = true;
    for (const auto& job : queue_) {
      for (std::int64_t tag : job->tags) flying_.erase(tag);
    }
    queue_.clear();
  }
  cv_.notify_all();
  if (dispatcher_.joinable() && dispatcher_.get_id() != std::this_thread::get_id()) {
    dispatcher_.join();
  }
}

}  // namespace vlarl
