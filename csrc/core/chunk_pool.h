// One thread pool for engines of different models, and EnvPool-style asynchronous chunks.
//
// A LIBERO suite has one MuJoCo model per task, so its envs live in one EnvBatch + ChunkRunner
// per task model. A ChunkPool owns the worker threads those batches share (EnvBatch's
// shared-pool constructor) and runs chunks over any mix of their envs as ONE job on the pool:
// the workers claim envs of every task from one counter, so the pool is busy until the last
// env of the call is done, whatever the mix.
//
// send(parts, K) queues such a job and returns at once; a dispatcher thread runs the jobs in
// order (it takes every batch's call lock, in a fixed order, for the job's whole run). Each env
// is reported finished the moment its own chunk (and render) is done; recv(min_envs) waits for
// at least min_envs of them and returns every finished env's tag. An env's work is exactly
// ChunkRunner::run_env, so the state an env ends in is bit-identical to the synchronous
// ChunkRunner::run, whatever the completion order or the thread count.
//
// Lifetime and threads (docs/engine.md): a job holds its batches' call locks while it runs, so
// close() of an engine waits for it and makes it stop at the next control step (the job then
// fails with EngineClosed, which recv rethrows). recv's poll (the binding passes Python's
// signal check) runs on the calling thread while it waits; when it fires every env of the
// running job stops at its next control step, queued jobs are dropped and recv throws
// Interrupted. ChunkPool::close() drops queued jobs, waits for the running one and stops the
// dispatcher; the worker threads live as long as a batch holds them.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "chunk_runner.h"
#include "thread_pool.h"

namespace vlarl {

// One runner's share of a job.
struct ChunkPart {
  std::shared_ptr<ChunkRunner> runner;
  std::vector<int> envs;             // the runner's env ids, distinct
  std::vector<std::int64_t> tags;    // the caller's id of each env (what recv returns)
  std::vector<double> actions;       // [envs.size(), K, action_dim] (the job's own copy)
  ChunkOutputs out;                  // caller-owned rows, written by the env's worker
  RenderMode mode = RenderMode::kNone;
  FrameTarget frames;
  std::function<void()> check;       // runs under the call lock before the job starts
  std::shared_ptr<void> keep;        // whatever `frames` must keep alive (the renderer)
};

class ChunkPool {
 public:
  explicit ChunkPool(int num_threads);
  ~ChunkPool();
  ChunkPool(const ChunkPool&) = delete;
  ChunkPool& operator=(const ChunkPool&) = delete;

  const std::shared_ptr<ThreadPool>& threads() const { return threads_; }
  int num_threads() const { return threads_ ? threads_->size() : 0; }

  // Queues K control steps for every env of every part as one job; returns at once. Throws
  // std::invalid_argument (K, a runner on another pool, a tag already in flight, duplicate
  // envs or tags) and EngineClosed after close().
  void send(std::vector<ChunkPart> parts, int K);

  struct Received {
    std::vector<std::int64_t> tags;    // finished envs, in completion order
    std::vector<std::int64_t> failed;  // those of them that hit a MuJoCo error
  };
  // Waits until min(min_envs, in_flight()) envs have finished and returns every finished env
  // (>= that many; 0 waits for nothing). Rethrows the exception of a job that failed (its envs
  // leave the flight). poll: see the file comment.
  Received recv(int min_envs, const std::function<bool()>& poll = {}, int interval_ms = 10);

  int in_flight() const;
  // Drops queued jobs, waits for the running one, stops the dispatcher. Idempotent.
  void close();
  bool closed() const;

 private:
  struct Job;
  void dispatch_loop();
  void run_job(Job& job);

  std::shared_ptr<ThreadPool> threads_;
  mutable std::mutex mu_;
  std::condition_variable cv_;          // job queued / env finished / job ended
  std::deque<std::shared_ptr<Job>> queue_;
  std::shared_ptr<Job> running_;
  std::set<std::int64_t> flying_;       // tags sent and not yet received
  std::vector<std::int64_t> ready_, ready_failed_;
  std::exception_ptr error_;            // a failed job's exception, for the next recv
  bool stopping_ = false;
  std::thread dispatcher_;
};

}  // namespace vlarl
