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
#pragma once

#include <cstdint>
#include <memory>
#include <string>
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

class EnvBatch {
 public:
  // Copies `model`; the caller keeps ownership of its own model.
  EnvBatch(const mjModel* model, int num_envs, int num_threads);
  ~EnvBatch();
  EnvBatch(const EnvBatch&) = delete;
  EnvBatch& operator=(const EnvBatch&) = delete;

  // Stops the workers. Memory stays valid until destruction (views may outlive close()).
  void close();
  bool closed() const { return closed_; }

  int num_envs() const { return num_envs_; }
  int num_threads() const { return pool_ ? pool_->size() : 0; }
  const mjModel* model() const { return model_; }
  mjData* data(int env) { return datas_[env]; }
  const mjData* data(int env) const { return datas_[env]; }
  ThreadPool& pool();

  // Runs fn(env_index_in_list, env, worker) for each env of `env_ids` (all envs when empty).
  void for_each_env(const std::vector<int>& env_ids,
                    const std::function<void(int slot, int env, int worker)>& fn);

  // Sets ctrl rows (row-major [ids.size(), nu], or nullptr to keep ctrl), then runs nstep
  // mj_step per env. Envs whose status is not kEnvOk are skipped. Returns the ids of envs that
  // hit a MuJoCo error during this call.
  std::vector<int> step(const mjtNum* ctrl, int nstep, const std::vector<int>& env_ids);

  // mj_forward on the given envs (all when empty).
  void forward(const std::vector<int>& env_ids);

  int state_size(unsigned int spec) const;
  // out: [ids.size(), state_size(spec)]
  void get_state(mjtNum* out, unsigned int spec, const std::vector<int>& env_ids) const;
  // states: [ids.size(), size] or, when broadcast, one row for all. Clears status to kEnvOk.
  void set_state(const mjtNum* states, bool broadcast, unsigned int spec,
                 const std::vector<int>& env_ids);

  const std::vector<FieldInfo>& fields() const { return fields_; }
  const FieldInfo* find_field(const std::string& name) const;
  char* buffer_block() { return block_; }
  std::size_t env_stride_bytes() const { return stride_; }

  std::uint8_t* status() { return status_.data(); }
  double* time() { return time_.data(); }
  std::string status_message(int env) const { return messages_[env]; }
  void mark(int env, EnvStatus status, const std::string& message);

  // Validates env ids (throws std::out_of_range naming the bad id); empty means all envs.
  std::vector<int> resolve_ids(const std::vector<int>& env_ids) const;

 private:
  void check_open(const char* what) const;

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
  std::unique_ptr<ThreadPool> pool_;
  bool closed_ = false;
};

}  // namespace vlarl
