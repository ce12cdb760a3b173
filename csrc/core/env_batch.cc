#include "env_batch.h"

#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "mujoco_guard.h"

namespace vlarl {
namespace {

constexpr std::size_t kAlign = 64;  // mju_malloc's alignment; also a cache line

struct StepCtx {
  const mjModel* m;
  mjData* d;
  int nstep;
  bool unstable;
  const EnvBatch* batch;  // cancelled() is polled between steps
};

// Plain function (no destructors) so that a MuJoCo error can longjmp over it.
void step_env(void* p) {
  auto* c = static_cast<StepCtx*>(p);
  for (int s = 0; s < c->nstep; ++s) {
    if (c->batch->cancelled()) return;  // between whole steps: the state stays consistent
    const int before = bad_state_warnings(c->d);
    mj_step(c->m, c->d);
    if (bad_state_warnings(c->d) != before) {
      c->unstable = true;
      return;
    }
  }
}


struct CopyModelCtx {
  const mjModel* src;
  mjModel* dst;
};
void copy_model(void* p) {
  auto* c = static_cast<CopyModelCtx*>(p);
  c->dst = mj_copyModel(nullptr, c->src);
}
struct MakeDataCtx {
  const mjModel* m;
  mjData* d;
};
void make_data(void* p) {
  auto* c = static_cast<MakeDataCtx*>(p);
  c->d = mj_makeData(c->m);
}

}  // namespace

EnvBatch::EnvBatch(const mjModel* model, int num_envs, int num_threads) {
  if (num_threads < 1) {
    throw std::invalid_argument("num_threads must be >= 1, got " + std::to_string(num_threads));
  }
  init(model, num_envs, std::make_shared<ThreadPool>(num_threads));
}

EnvBatch::EnvBatch(const mjModel* model, int num_envs, std::shared_ptr<ThreadPool> pool) {
  if (!pool) throw std::invalid_argument("pool is null");
  init(model, num_envs, std::move(pool));
}

void EnvBatch::init(const mjModel* model, int num_envs, std::shared_ptr<ThreadPool> pool) {
  if (!model) throw std::invalid_argument("model is null");
  if (num_envs < 1) {
    throw std::invalid_argument("num_envs must be >= 1, got " + std::to_string(num_envs));
  }
  num_envs_ = num_envs;
  CopyModelCtx cm{model, nullptr};
  guarded_or_throw("mj_copyModel", &copy_model, &cm);
  model_ = cm.dst;

  datas_.assign(num_envs, nullptr);
  original_buffers_.assign(num_envs, nullptr);
  try {
    for (int i = 0; i < num_envs; ++i) {
      MakeDataCtx md{model_, nullptr};
      guarded_or_throw("mj_makeData", &make_data, &md);
      if (!md.d) throw MujocoError("mj_makeData returned null (out of memory?)");
      datas_[i] = md.d;
    }
    const std::size_t nbuffer = static_cast<std::size_t>(datas_[0]->nbuffer);
    stride_ = (nbuffer + kAlign - 1) / kAlign * kAlign;
    if (stride_ == 0) stride_ = kAlign;
    block_ = static_cast<char*>(std::aligned_alloc(kAlign, stride_ * num_envs));
    if (!block_) throw std::bad_alloc();
    std::memset(block_, 0, stride_ * num_envs);
    fields_ = describe_data_fields(model_, datas_[0]);
    for (int i = 0; i < num_envs; ++i) {
      mjData* d = datas_[i];
      char* dst = block_ + stride_ * i;
      std::memcpy(dst, d->buffer, nbuffer);
      original_buffers_[i] = d->buffer;
      rebase_data_pointers(model_, d, d->buffer, dst);
    }
  } catch (...) {
    for (int i = 0; i < num_envs; ++i) {
      if (!datas_[i]) continue;
      if (original_buffers_[i]) datas_[i]->buffer = original_buffers_[i];
      mj_deleteData(datas_[i]);
    }
    std::free(block_);
    mj_deleteModel(model_);
    throw;
  }
  status_.assign(num_envs, kEnvOk);
  time_.assign(num_envs, 0.0);
  messages_.assign(num_envs, "");
  for (int i = 0; i < num_envs; ++i) time_[i] = datas_[i]->time;
  num_threads_ = pool->size();
  pool_ = std::move(pool);
}

EnvBatch::~EnvBatch() {
  close();  // no call can run: every caller holds a reference
  for (int i = 0; i < num_envs_; ++i) {
    datas_[i]->buffer = original_buffers_[i];  // mj_deleteData frees its own buffer
    mj_deleteData(datas_[i]);
  }
  std::free(block_);
  mj_deleteModel(model_);
}

// ------------------------------------------------------------------ the call lock
CallLock::CallLock(CallLock&& other) noexcept : batch_(other.batch_) { other.batch_ = nullptr; }

CallLock& CallLock::operator=(CallLock&& other) noexcept {
  if (this != &other) {
    release();
    batch_ = other.batch_;
    other.batch_ = nullptr;
  }
  return *this;
}

CallLock::~CallLock() { release(); }

void CallLock::release() {
  if (batch_) {
    batch_->unlock_call();
    batch_ = nullptr;
  }
}

CallLock EnvBatch::lock_state(const char* what) {
  if (owner_.load() == std::this_thread::get_id()) {
    throw std::logic_error(std::string(what) +
                           ": called while this thread is inside another call of the same "
                           "engine (from a signal handler?); only close() may be called there");
  }
  mu_.lock();
  owner_.store(std::this_thread::get_id());
  return CallLock(this);
}

CallLock EnvBatch::lock_call(const char* what) {
  CallLock lock = lock_state(what);
  if (closing_.load()) throw EngineClosed(std::string(what) + ": the engine is closed");
  return lock;
}

void EnvBatch::unlock_call() {
  if (closing_.load() && !closed_) finish_close_locked();
  owner_.store(std::thread::id());
  mu_.unlock();
}

void EnvBatch::require(const CallLock& lock, const char* what) const {
  if (!lock.holds(*this)) {
    throw std::logic_error(std::string(what) + ": the caller does not hold this batch's call lock");
  }
}

ThreadPool& EnvBatch::pool(const CallLock& lock) {
  require(lock, "pool");
  if (closed_ || !pool_) throw EngineClosed("pool: the engine is closed");
  return *pool_;
}

void EnvBatch::set_interrupt_check(std::function<bool()> check, int interval_ms) {
  CallLock lock = lock_state("set_interrupt_check");
  interrupt_check_ = std::move(check);
  interrupt_interval_ms_ = interval_ms < 1 ? 1 : interval_ms;
}

int EnvBatch::add_close_hook(const CallLock& lock, std::function<void()> fn) {
  require(lock, "add_close_hook");
  const int id = next_hook_id_++;
  close_hooks_[id] = std::move(fn);
  return id;
}

void EnvBatch::remove_close_hook(const CallLock& lock, int id) {
  require(lock, "remove_close_hook");
  close_hooks_.erase(id);
}

void EnvBatch::parallel(const CallLock& lock, int n,
                        const std::function<void(int, int)>& fn, const char* what) {
  parallel_many({this}, {&lock}, n, fn, what);
}

void EnvBatch::parallel_many(const std::vector<EnvBatch*>& batches,
                             const std::vector<const CallLock*>& locks, int n,
                             const std::function<void(int, int)>& fn, const char* what) {
  if (batches.empty() || batches.size() != locks.size()) {
    throw std::logic_error(std::string(what) + ": parallel_many needs one lock per batch");
  }
  EnvBatch* first = batches[0];
  ThreadPool& workers = first->pool(*locks[0]);
  for (std::size_t b = 1; b < batches.size(); ++b) {
    if (&batches[b]->pool(*locks[b]) != &workers) {
      throw std::invalid_argument(std::string(what) +
                                  ": the engines of one call must share one thread pool");
    }
  }
  for (EnvBatch* b : batches) {
    b->interrupted_.store(false);
    b->aborted_.store(false);
  }
  const auto stop_all = [&batches](std::atomic<bool> EnvBatch::*flag) {
    for (EnvBatch* b : batches) (b->*flag).store(true);
  };
  ThreadPool::PollFn poll;
  if (first->interrupt_check_ || batches.size() > 1) {
    poll = [&] {
      bool closing = false;
      for (EnvBatch* b : batches) {
        if (b->interrupted_.load()) return true;
        closing = closing || b->closing_.load();
      }
      if (closing && batches.size() == 1) return true;
      if (!first->interrupt_check_) return false;
      bool fired = false;
      try {
        fired = first->interrupt_check_();
      } catch (...) {
        stop_all(&EnvBatch::aborted_);  // the running tasks stop too; the pool rethrows
        throw;
      }
      if (!fired) return false;
      stop_all(&EnvBatch::interrupted_);  // workers stop at their next step boundary
      return true;
    };
  }
  std::exception_ptr error;
  try {
    // One batch: tasks not yet started are skipped once cancelled (with several batches each
    // task checks its own batch, see ChunkRunner::run_env).
    const std::function<void(int, int)> guarded = [&](int task, int worker) {
      if (!first->cancelled()) fn(task, worker);
    };
    workers.parallel_for(n, batches.size() == 1 ? guarded : fn, poll,
                         std::chrono::milliseconds(first->interrupt_interval_ms_));
  } catch (const std::exception&) {  // (a forced unwind, not a std::exception, passes)
    error = std::current_exception();
  }
  bool interrupted = false, closed = false;
  for (EnvBatch* b : batches) {
    interrupted = b->interrupted_.exchange(false) || interrupted;
    closed = closed || b->closing_.load();
    b->aborted_.store(false);
  }
  if (interrupted) throw Interrupted(std::string(what) + ": interrupted");
  if (closed) {
    throw EngineClosed(std::string(what) +
                       ": the engine was closed during the call (envs keep the steps they ran)");
  }
  if (error) std::rethrow_exception(error);
}

void EnvBatch::close() {
  closing_.store(true);  // a running call stops at its next step boundary
  if (owner_.load() == std::this_thread::get_id()) return;  // completes at unlock_call
  CallLock lock = lock_state("close");
  // ~CallLock runs finish_close_locked()
}

void EnvBatch::finish_close_locked() {
  for (auto& hook : close_hooks_) {
    try {
      hook.second();
    } catch (...) {
      // a hook frees resources; one that fails must not keep the workers alive
    }
  }
  close_hooks_.clear();
  pool_.reset();
  closed_ = true;
}

std::string EnvBatch::status_message(int env) {
  resolve_ids({env});
  CallLock lock = lock_state("status_message");
  return messages_[env];
}

std::vector<int> EnvBatch::resolve_ids(const std::vector<int>& env_ids) const {
  if (env_ids.empty()) {
    std::vector<int> all(num_envs_);
    for (int i = 0; i < num_envs_; ++i) all[i] = i;
    return all;
  }
  for (int id : env_ids) {
    if (id < 0 || id >= num_envs_) {
      throw std::out_of_range("env id " + std::to_string(id) + " is out of range [0, " +
                              std::to_string(num_envs_) + ")");
    }
  }
  return env_ids;
}

const FieldInfo* EnvBatch::find_field(const std::string& name) const {
  for (const auto& f : fields_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

void EnvBatch::mark(int env, EnvStatus status, const std::string& message) {
  status_[env] = status;
  messages_[env] = message;
}

std::vector<int> EnvBatch::step(const mjtNum* ctrl, int nstep, const std::vector<int>& env_ids) {
  if (nstep < 0) throw std::invalid_argument("nstep must be >= 0, got " + std::to_string(nstep));
  const std::vector<int> ids = resolve_ids(env_ids);
  CallLock lock = lock_call("step");
  const int nu = model_->nu;
  std::vector<std::uint8_t> errored(ids.size(), 0);
  parallel(lock, static_cast<int>(ids.size()), [&](int slot, int) {
    const int env = ids[slot];
    mjData* d = datas_[env];
    if (ctrl && nu > 0) std::memcpy(d->ctrl, ctrl + static_cast<std::size_t>(slot) * nu,
                                    sizeof(mjtNum) * nu);
    if (status_[env] != kEnvOk) return;
    StepCtx ctx{model_, d, nstep, false, this};
    std::string error;
    if (!guarded_call(&step_env, &ctx, &error)) {
      // MuJoCo's stack markers are inconsistent after the jump: reset the env's data.
      guarded_reset(model_, d, nullptr);
      mark(env, kEnvError, error);
      errored[slot] = 1;
    } else if (ctx.unstable) {
      std::string warning = take_last_warning();
      mark(env, kEnvUnstable, warning.empty() ? "bad qpos/qvel/qacc" : warning);
    }
    time_[env] = d->time;
  }, "step");
  std::vector<int> failed;
  for (std::size_t s = 0; s < ids.size(); ++s) {
    if (errored[s]) failed.push_back(ids[s]);
  }
  return failed;
}

void EnvBatch::forward(const std::vector<int>& env_ids) {
  const std::vector<int> ids = resolve_ids(env_ids);
  CallLock lock = lock_call("forward");
  parallel(lock, static_cast<int>(ids.size()), [&](int slot, int) {
    const int env = ids[slot];
    std::string error;
    if (!guarded_forward(model_, datas_[env], &error)) mark(env, kEnvError, error);
  }, "forward");
}

int EnvBatch::state_size(unsigned int spec) const {
  if (spec >= (1u << mjNSTATE)) {
    throw std::invalid_argument("state spec " + std::to_string(spec) +
                                " has bits outside mjtState (max " +
                                std::to_string((1u << mjNSTATE) - 1) + ")");
  }
  return mj_stateSize(model_, spec);
}

void EnvBatch::get_state(mjtNum* out, unsigned int spec, const std::vector<int>& env_ids) {
  const std::vector<int> ids = resolve_ids(env_ids);
  const int size = state_size(spec);
  CallLock lock = lock_call("get_state");
  for (std::size_t s = 0; s < ids.size(); ++s) {
    mj_getState(model_, datas_[ids[s]], out + s * size, spec);
  }
}

void EnvBatch::set_state(const mjtNum* states, bool broadcast, unsigned int spec,
                         const std::vector<int>& env_ids) {
  const std::vector<int> ids = resolve_ids(env_ids);
  const int size = state_size(spec);
  CallLock lock = lock_call("set_state");
  for (std::size_t s = 0; s < ids.size(); ++s) {
    const int env = ids[s];
    mjData* d = datas_[env];
    // A fresh start: clear warnings (they decide instability) and any previous failure.
    std::memset(d->warning, 0, sizeof(d->warning));
    mj_setState(model_, d, states + (broadcast ? 0 : s * size), spec);
    status_[env] = kEnvOk;
    messages_[env].clear();
    time_[env] = d->time;
  }
}

}  // namespace vlarl
