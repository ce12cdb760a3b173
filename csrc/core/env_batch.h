// N MuJoCo environments on one shared, read-only mjModel, stepped by a persistent thread pool.
//
// Memory: every mjData's main buffer is moved into one engine-owned block, env i at
// block + i * env_stride_bytes(). A field of all environments (qpos, ctrl, xpos, ...) is then a
// single strided array [num_envs, rows, cols] that the binding hands out without copying.
// `time` is a scalar member of mjData, not a buffer field: it is mirrored into time_[] after
// every call that changes it.
//
// The core trusts its arguments (shapes, ids, finite values) except where noted: the binding
// validates them once. Errors it can detect itself throw std::invalid_argument/out_of_range.
//
// Lifetime and threads (docs/engine.md, "Lifetime, threads and interrupts"):
// - Every call that reads or writes env state (step, forward, get_state, set_state, the chunk
//   runner's and the renderer's calls) holds the batch's call lock from start to end, so calls
//   made from several threads run one at a time and never see each other half done.
// - close() marks the batch closing, which makes a running call stop at its next step
//   boundary (it then throws EngineClosed), waits for the call lock, runs the close hooks
//   (the renderer frees its GL contexts) and stops the workers. Later calls throw EngineClosed.
//   The memory (mjData block, status, time) lives until the EnvBatch is destroyed.
// - An interrupt check (set_interrupt_check) runs on the calling thread every few milliseconds
//   while a call's workers run; when it returns true the call stops at the next step boundary
//   and throws Interrupted. Envs keep the whole steps they ran.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <mujoco/mujoco.h>

#include "data_fields.h"
#include "thread_pool.h"

namespace vlarl {

// Per-env health, exposed as a uint8 array.
enum EnvStatus : std::uint8_t {
  kEnvOk = 0,
  kEnvUnstable = 1,  // MuJoCo warned of a bad qpos/qvel/qacc: the env stops stepping
  kEnvError = 2,     // mju_error inside this env: the env stops stepping
};

// A call on a closed (or closing) batch, or a call that close() stopped.
class EngineClosed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A call stopped because the interrupt check returned true.
class Interrupted : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class EnvBatch;

// Proof that the caller holds a batch's call lock (movable, not copyable). When the lock is
// let go after close() was requested, the close completes first (see EnvBatch::close).
class CallLock {
 public:
  CallLock() = default;
  CallLock(CallLock&& other) noexcept;
  CallLock& operator=(CallLock&& other) noexcept;
  CallLock(const CallLock&) = delete;
  CallLock& operator=(const CallLock&) = delete;
  ~CallLock();
  bool holds(const EnvBatch& batch) const { return batch_ == &batch; }

 private:
  friend class EnvBatch;
  explicit CallLock(EnvBatch* batch) : batch_(batch) {}
  void release();
  EnvBatch* batch_ = nullptr;
};

class EnvBatch {
 public:
  // Copies `model`; the caller keeps ownership of its own model.
  EnvBatch(const mjModel* model, int num_envs, int num_threads);
  // The same on a thread pool shared with other batches (e.g. one per LIBERO task model, see
  // chunk_pool.h): their calls run one job at a time on the same workers, and one call may
  // step envs of several batches (parallel_many). The pool lives while any batch holds it.
  EnvBatch(const mjModel* model, int num_envs, std::shared_ptr<ThreadPool> pool);
  ~EnvBatch();
  EnvBatch(const EnvBatch&) = delete;
  EnvBatch& operator=(const EnvBatch&) = delete;

  // Stops a running call at its next step boundary, waits for it, runs the close hooks and
  // stops the workers (idempotent, callable from any thread). Memory stays valid until
  // destruction (views may outlive close()). Called from the thread that holds the call lock
  // (e.g. from a signal handler run by the interrupt check) it only requests the close, which
  // completes when that thread lets the lock go.
  void close();
  // True from the moment close() was requested.
  bool closed() const { return closing_.load(); }

  int num_envs() const { return num_envs_; }
  int num_threads() const { return closed() ? 0 : num_threads_; }
  const mjModel* model() const { return model_; }
  mjData* data(int env) { return datas_[env]; }
  const mjData* data(int env) const { return datas_[env]; }

  // ---------------------------------------------------------------- concurrency
  // Takes the call lock; throws EngineClosed("<what>: the engine is closed") when the batch is
  // closed or closing, and std::logic_error when this thread already holds it (a re-entrant
  // call, e.g. from a signal handler that runs while this thread waits for its workers).
  CallLock lock_call(const char* what);
  // The call lock without the closed check, for reads that stay valid after close().
  CallLock lock_state(const char* what);
  // The worker pool; needs the call lock (throws EngineClosed when closed).
  ThreadPool& pool(const CallLock& lock);
  // Runs fn(task, worker) for task in [0, n) on the pool, with the call lock held. Tasks not
  // yet started are skipped once cancelled(); after the job it throws Interrupted (interrupt
  // check) or EngineClosed (close() from another thread) if either happened, else rethrows
  // the first exception of fn.
  void parallel(const CallLock& lock, int n, const std::function<void(int task, int worker)>& fn,
                const char* what);
  // The same over envs of several batches in one job: the caller holds the call lock of every
  // batch (`locks`, one per batch, same order) and all batches share one pool (else
  // std::invalid_argument). The first batch's interrupt check polls; when it fires every
  // batch's running work stops at its next step boundary. After the job: Interrupted, then
  // EngineClosed if any batch was closed during it, else fn's first exception.
  static void parallel_many(const std::vector<EnvBatch*>& batches,
                            const std::vector<const CallLock*>& locks, int n,
                            const std::function<void(int task, int worker)>& fn, const char* what);
  // Makes a running call stop at its next step boundary and throw Interrupted, as the
  // interrupt check does (for a call run on another thread, e.g. ChunkPool's dispatcher).
  void request_interrupt() { interrupted_.store(true); }
  // True when the batch steps on `pool` (false once closed).
  bool uses_pool(const ThreadPool* pool) const { return pool_.get() == pool; }
  // True while the running call should stop at its next step boundary (workers poll it).
  bool cancelled() const {
    return interrupted_.load(std::memory_order_relaxed) ||
           closing_.load(std::memory_order_relaxed) || aborted_.load(std::memory_order_relaxed);
  }
  // check() runs on the calling thread every interval_ms while a call's workers run; true
  // stops the call (Interrupted). The binding installs Python's signal check here.
  void set_interrupt_check(std::function<bool()> check, int interval_ms = 10);
  // fn runs once inside close(), with the call lock held, before the workers stop.
  int add_close_hook(const CallLock& lock, std::function<void()> fn);
  void remove_close_hook(const CallLock& lock, int id);

  // Sets ctrl rows (row-major [ids.size(), nu], or nullptr to keep ctrl), then runs nstep
  // mj_step per env. Envs whose status is not kEnvOk are skipped. Returns the ids of envs that
  // hit a MuJoCo error during this call.
  std::vector<int> step(const mjtNum* ctrl, int nstep, const std::vector<int>& env_ids);

  // mj_forward on the given envs (all when empty).
  void forward(const std::vector<int>& env_ids);

  int state_size(unsigned int spec) const;
  // out: [ids.size(), state_size(spec)]
  void get_state(mjtNum* out, unsigned int spec, const std::vector<int>& env_ids);
  // states: [ids.size(), size] or, when broadcast, one row for all. Clears status to kEnvOk.
  void set_state(const mjtNum* states, bool broadcast, unsigned int spec,
                 const std::vector<int>& env_ids);

  const std::vector<FieldInfo>& fields() const { return fields_; }
  const FieldInfo* find_field(const std::string& name) const;
  char* buffer_block() { return block_; }
  std::size_t env_stride_bytes() const { return stride_; }

  std::uint8_t* status() { return status_.data(); }
  double* time() { return time_.data(); }
  // env's status message; takes the call lock (usable after close()).
  std::string status_message(int env);
  void mark(int env, EnvStatus status, const std::string& message);

  // Validates env ids (throws std::out_of_range naming the bad id); empty means all envs.
  std::vector<int> resolve_ids(const std::vector<int>& env_ids) const;

 private:
  friend class CallLock;
  void require(const CallLock& lock, const char* what) const;
  void unlock_call();         // completes a requested close, then lets the lock go
  void finish_close_locked();
  void init(const mjModel* model, int num_envs, std::shared_ptr<ThreadPool> pool);


  mjModel* model_ = nullptr;
  int num_envs_ = 0;
  std::vector<mjData*> datas_;
  std::vector<void*> original_buffers_;  // mj_makeData's own buffers, restored before delete
  char* block_ = nullptr;
  std::size_t stride_ = 0;
  std::vector<FieldInfo> fields_;
  std::vector<std::uint8_t> status_;
  std::vector<double> time_;
  std::vector<std::string> messages_;
  std::shared_ptr<ThreadPool> pool_;
  int num_threads_ = 0;

  std::mutex mu_;                          // the call lock
  std::atomic<std::thread::id> owner_{};   // thread holding mu_ (re-entrancy check)
  std::atomic<bool> closing_{false};       // close() requested
  bool closed_ = false;                    // close() completed (guarded by mu_)
  std::atomic<bool> interrupted_{false};   // the running call's interrupt check fired
  std::atomic<bool> aborted_{false};       // the running call's interrupt check threw
  std::function<bool()> interrupt_check_;
  int interrupt_interval_ms_ = 10;
  std::map<int, std::function<void()>> close_hooks_;
  int next_hook_id_ = 0;
};

}  // namespace vlarl
