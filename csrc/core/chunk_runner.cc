#include "chunk_runner.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "mujoco_guard.h"

namespace vlarl {
namespace {

// Accessors of per-env state (rows of states_/predicates_) also hold the call lock.

struct ControlStepCtx {
  const mjModel* m;
  mjData* d;
  const OscController* controller;
  OscState* state;
  OscScratch* scratch;
  const double* action;
  int substeps;
  bool unstable;
};

// One robosuite env.step for one env. Plain function (no destructors): a MuJoCo error may
// longjmp over it.
void control_step(void* p) {
  auto* c = static_cast<ControlStepCtx*>(p);
  for (int s = 0; s < c->substeps; ++s) {
    const int before = bad_state_warnings(c->d);
    mj_step1(c->m, c->d);
    if (s == 0) c->controller->set_goal(c->d, c->action, c->state);
    c->controller->compute_control(c->d, c->action, c->state, c->scratch);
    mj_step2(c->m, c->d);
    if (bad_state_warnings(c->d) != before) {
      c->unstable = true;
      return;
    }
  }
}


}  // namespace

ChunkRunner::ChunkRunner(std::shared_ptr<EnvBatch> batch, OscSpec spec, RobotObservation obs,
                         int substeps, std::vector<double> initial_joint)
    : batch_(std::move(batch)),
      controller_(batch_->model(), std::move(spec)),
      obs_(std::move(obs)),
      substeps_(substeps) {
  const mjModel* m = batch_->model();
  if (substeps < 1) {
    throw std::invalid_argument("substeps must be >= 1, got " + std::to_string(substeps));
  }
  if (obs_.eef_site < 0 || obs_.eef_site >= m->nsite) {
    throw std::invalid_argument("RobotObservation.eef_site: " + std::to_string(obs_.eef_site) +
                                " is out of range [0, " + std::to_string(m->nsite) + ")");
  }
  if (obs_.eef_body < 0 || obs_.eef_body >= m->nbody) {
    throw std::invalid_argument("RobotObservation.eef_body: " + std::to_string(obs_.eef_body) +
                                " is out of range [0, " + std::to_string(m->nbody) + ")");
  }
  for (const auto* v : {&obs_.gripper_qpos, &obs_.joint_qpos}) {
    for (int a : *v) {
      if (a < 0 || a >= m->nq) {
        throw std::invalid_argument("RobotObservation qpos address " + std::to_string(a) +
                                    " is out of range [0, " + std::to_string(m->nq) + ")");
      }
    }
  }
  const int n = controller_.spec().num_joints();
  if (static_cast<int>(initial_joint.size()) != n) {
    throw std::invalid_argument("initial_joint: expected " + std::to_string(n) +
                                " values, got " + std::to_string(initial_joint.size()));
  }
  const int N = batch_->num_envs();
  states_.resize(N);
  for (auto& s : states_) {
    s.initial_joint = initial_joint;
    s.gripper_action.assign(controller_.spec().gripper_actuators.size(), 0.0);
  }
  predicates_.resize(N);
  success_.assign(N, 0);
  if (batch_->closed()) throw EngineClosed("ChunkRunner: the engine is closed");
  for (int w = 0; w < batch_->num_threads(); ++w) {
    scratch_.push_back(std::make_unique<OscScratch>(m, controller_.spec()));
  }
}

void ChunkRunner::reset_episodes(const std::vector<int>& env_ids) {
  const std::vector<int> ids = batch_->resolve_ids(env_ids);
  const mjModel* m = batch_->model();
  CallLock lock = batch_->lock_call("reset_episodes");
  batch_->parallel(lock, static_cast<int>(ids.size()), [&](int slot, int) {
    const int env = ids[slot];
    mjData* d = batch_->data(env);
    std::string error;
    if (!guarded_forward(m, d, &error)) {
      batch_->mark(env, kEnvError, error);
      return;
    }
    controller_.reset(d, &states_[env]);
    success_[env] = 0;
  }, "reset_episodes");
}

std::vector<double> ChunkRunner::initial_joint(int env) const {
  batch_->resolve_ids({env});
  CallLock lock = batch_->lock_state("initial_joint");
  return states_[env].initial_joint;
}

OscState ChunkRunner::state(int env) const {
  batch_->resolve_ids({env});
  CallLock lock = batch_->lock_state("controller_goal");
  return states_[env];
}

std::size_t ChunkRunner::num_predicates(int env) const {
  batch_->resolve_ids({env});
  CallLock lock = batch_->lock_state("num_success_predicates");
  return predicates_[env].size();
}

void ChunkRunner::set_initial_joint(const double* q, bool broadcast,
                                    const std::vector<int>& env_ids) {
  const std::vector<int> ids = batch_->resolve_ids(env_ids);
  const int n = controller_.spec().num_joints();
  CallLock lock = batch_->lock_call("set_initial_joint");
  for (std::size_t s = 0; s < ids.size(); ++s) {
    const double* row = q + (broadcast ? 0 : s * n);
    states_[ids[s]].initial_joint.assign(row, row + n);
  }
}

void ChunkRunner::set_controller_state(int env, const double* goal_pos, const double* goal_ori,
                                       const double* gripper_action) {
  batch_->resolve_ids({env});
  CallLock lock = batch_->lock_call("set_controller_goal");
  OscState& s = states_[env];
  std::copy(goal_pos, goal_pos + 3, s.goal_pos);
  std::copy(goal_ori, goal_ori + 9, s.goal_ori);
  std::copy(gripper_action, gripper_action + s.gripper_action.size(), s.gripper_action.begin());
}

void ChunkRunner::set_predicates(const std::vector<int>& env_ids,
                                 const std::vector<Predicate>& preds) {
  const std::vector<int> ids = batch_->resolve_ids(env_ids);
  std::vector<Predicate> sorted = preds;
  for (auto& p : sorted) {
    std::sort(p.geoms_a.begin(), p.geoms_a.end());
    std::sort(p.geoms_b.begin(), p.geoms_b.end());
    p.validate(batch_->model());
  }
  CallLock lock = batch_->lock_call("set_success");
  for (int env : ids) predicates_[env] = sorted;
}

void ChunkRunner::record(int env, const mjData* d, const ChunkOutputs& out, int k) const {
  const std::size_t row = static_cast<std::size_t>(env) * out.capacity_k + k;
  const double* p = d->site_xpos + 3 * obs_.eef_site;
  for (int i = 0; i < 3; ++i) out.eef_pos[row * 3 + i] = p[i];
  const double* q = d->xquat + 4 * obs_.eef_body;  // MuJoCo (w, x, y, z) -> (x, y, z, w)
  out.eef_quat[row * 4 + 0] = q[1];
  out.eef_quat[row * 4 + 1] = q[2];
  out.eef_quat[row * 4 + 2] = q[3];
  out.eef_quat[row * 4 + 3] = q[0];
  const std::size_t ng = obs_.gripper_qpos.size();
  for (std::size_t i = 0; i < ng; ++i) out.gripper_qpos[row * ng + i] = d->qpos[obs_.gripper_qpos[i]];
  const std::size_t nj = obs_.joint_qpos.size();
  for (std::size_t i = 0; i < nj; ++i) out.joint_pos[row * nj + i] = d->qpos[obs_.joint_qpos[i]];
}

void ChunkRunner::check_run_args(int K, const ChunkOutputs& out, RenderMode mode,
                                 const FrameTarget* frames) const {
  if (K < 1 || K > out.capacity_k) {
    throw std::invalid_argument("K must be in [1, " + std::to_string(out.capacity_k) +
                                "], got " + std::to_string(K));
  }
  if (mode != RenderMode::kNone && (!frames || !frames->render)) {
    throw std::invalid_argument("a render mode other than none needs a renderer");
  }
  if (mode == RenderMode::kEvery && !out.frames_every) {
    throw std::invalid_argument("render mode every needs a frames_every buffer");
  }
}

bool ChunkRunner::run_env(int env, int worker, const double* actions, int K,
                          const ChunkOutputs& out, RenderMode mode, const FrameTarget* frames) {
  const mjModel* m = batch_->model();
  const int adim = action_dim();
  mjData* d = batch_->data(env);
  bool stopped = success_[env] || batch_->status()[env] != kEnvOk;
  bool ok = true;
  int executed = 0;
  for (int k = 0; k < K; ++k) {
    // Interrupt or close(): stop between control steps (the controller never stops mid-
    // action); the call then throws and its records are not returned.
    if (batch_->cancelled()) return ok;
    const bool moved = !stopped;
    if (!stopped) {
      ControlStepCtx ctx{m, d, &controller_, &states_[env], scratch_[worker].get(),
                         actions + static_cast<std::size_t>(k) * adim, substeps_, false};
      std::string error;
      if (!guarded_call(&control_step, &ctx, &error)) {
        guarded_reset(m, d, nullptr);
        batch_->mark(env, kEnvError, error);
        ok = false;
        stopped = true;
      } else {
        ++executed;
        if (ctx.unstable) {
          const std::string warning = take_last_warning();
          batch_->mark(env, kEnvUnstable, warning.empty() ? "bad qpos/qvel/qacc" : warning);
          stopped = true;
        } else if (evaluate_all(predicates_[env], m, d)) {
          success_[env] = 1;
          stopped = true;
        }
      }
      batch_->time()[env] = d->time;
    }
    record(env, d, out, k);
    out.done[static_cast<std::size_t>(env) * out.capacity_k + k] = stopped ? 1 : 0;
    if (mode == RenderMode::kEvery) {
      const std::size_t row = static_cast<std::size_t>(env) * out.capacity_k + k;
      if (moved || k == 0) {
        frames->render(env, worker, out.frames_every + row * frames->frame_bytes);
      } else {  // nothing moved: repeat the last frame
        std::memcpy(out.frames_every + row * frames->frame_bytes,
                    out.frames_every + (row - 1) * frames->frame_bytes, frames->frame_bytes);
      }
    }
  }
  out.success[env] = success_[env];
  out.steps[env] = executed;
  if (mode == RenderMode::kEnd) {
    if (batch_->cancelled()) return ok;
    frames->render(env, worker, frames->end_frames + static_cast<std::size_t>(env) *
                                                         frames->frame_bytes);
  }
  return ok;
}

std::vector<int> ChunkRunner::run(const double* actions, int K, const std::vector<int>& env_ids,
                                  const ChunkOutputs& out, RenderMode mode,
                                  const FrameTarget* frames,
                                  const std::function<void()>& check) {
  check_run_args(K, out, mode, frames);
  const std::vector<int> ids = batch_->resolve_ids(env_ids);
  const int adim = action_dim();
  std::vector<std::uint8_t> errored(ids.size(), 0);
  CallLock lock = batch_->lock_call("step_chunk");
  if (check) check();
  batch_->parallel(lock, static_cast<int>(ids.size()), [&](int slot, int worker) {
    const double* a = actions + static_cast<std::size_t>(slot) * K * adim;
    if (!run_env(ids[slot], worker, a, K, out, mode, frames)) errored[slot] = 1;
  }, "step_chunk");
  std::vector<int> failed;
  for (std::size_t s = 0; s < ids.size(); ++s) {
    if (errored[s]) failed.push_back(ids[s]);
  }
  return failed;
}

}  // namespace vlarl
