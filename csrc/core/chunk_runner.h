// Every public method holds the batch's call lock (EnvBatch::lock_call) while it reads or
// writes env or controller state, so it is safe against calls from other threads and close().
//
// Whole-chunk execution: K control steps per env (robosuite's OSC_POSE + gripper, substeps of
// mj_step1 / controller / mj_step2), per-step observations written straight into caller-owned
// [num_envs, K, ...] buffers, native success predicates with per-env early stop, optional
// rendering, all on the EnvBatch's worker pool.
//
// One control step of one env is robosuite 1.4.0's env.step(action) without observables:
//   for substep in range(substeps):
//     sim.forward(); robot.control(action, policy_step=(substep == 0)); sim.step()
// sim.forward() and the controller's own forward compute, from the state, exactly what
// mj_step1 computes (positions, velocities, mass matrix, bias forces; ctrl does not enter), and
// mj_step1 + mj_step2 is mj_step; so the state and every field of mjData after a control step
// are those robosuite's sim holds after env.step.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "env_batch.h"
#include "osc_controller.h"
#include "success_predicates.h"

namespace vlarl {

// What the chunk runner records and observes besides the controller's own indexes.
struct RobotObservation {
  int eef_site = -1;                 // robot.eef_site_id: eef_pos = site_xpos
  int eef_body = -1;                 // robot_model.eef_name: eef_quat = body xquat (as xyzw)
  std::vector<int> gripper_qpos;     // robot._ref_gripper_joint_pos_indexes
  std::vector<int> joint_qpos;       // robot._ref_joint_pos_indexes
};

// Caller-owned outputs, rows indexed by env id (only the envs of a call are written).
struct ChunkOutputs {
  int capacity_k = 0;                 // second dimension of the per-step buffers
  double* eef_pos = nullptr;          // [N, capacity_k, 3]
  double* eef_quat = nullptr;         // [N, capacity_k, 4] (x, y, z, w)
  double* gripper_qpos = nullptr;     // [N, capacity_k, num_gripper_qpos]
  double* joint_pos = nullptr;        // [N, capacity_k, num_joints]
  std::uint8_t* done = nullptr;       // [N, capacity_k]
  std::uint8_t* success = nullptr;    // [N]
  std::int32_t* steps = nullptr;      // [N]
  std::uint8_t* frames_every = nullptr;  // [N, capacity_k, frame_bytes] or null
};

// Rendering callback supplied by the binding (a BatchRenderer): render(env, worker, out) writes
// env's cameras (frame_bytes bytes) and runs on pool worker `worker`.
struct FrameTarget {
  std::function<void(int env, int worker, std::uint8_t* out)> render;
  std::size_t frame_bytes = 0;
  std::uint8_t* end_frames = nullptr;  // [N, frame_bytes]: "end" mode's destination
};

enum class RenderMode : int { kNone = 0, kEnd = 1, kEvery = 2 };

class ChunkRunner {
 public:
  // initial_joint: the nullspace target of every env (robosuite's controller.initial_joint).
  ChunkRunner(std::shared_ptr<EnvBatch> batch, OscSpec spec, RobotObservation obs,
              int substeps, std::vector<double> initial_joint);

  int substeps() const { return substeps_; }
  int action_dim() const { return controller_.spec().action_dim(); }
  const OscController& controller() const { return controller_; }
  const RobotObservation& observation() const { return obs_; }

  // Starts episodes at the envs' current physics state (after EnvBatch::set_state): runs
  // mj_forward, resets the goal to the current eef pose and the gripper command to rest, and
  // clears the episode's success.
  void reset_episodes(const std::vector<int>& env_ids);

  // Nullspace target per env: q is [ids.size(), num_joints] or one row for all (broadcast).
  void set_initial_joint(const double* q, bool broadcast, const std::vector<int>& env_ids);
  std::vector<double> initial_joint(int env) const;
  // A copy of env's controller state (taken under the call lock).
  OscState state(int env) const;
  std::size_t num_gripper_actuators() const { return controller_.spec().gripper_actuators.size(); }
  // Overrides the controller state of env: goal position [3], goal orientation [3x3 row-major]
  // and the gripper command [num gripper actuators] (robosuite's controller.goal_pos,
  // goal_ori and gripper.current_action), e.g. to continue an episode robosuite started.
  void set_controller_state(int env, const double* goal_pos, const double* goal_ori,
                            const double* gripper_action);

  // Success predicates of each env (conjunction; empty: never succeeds, no early stop).
  void set_predicates(const std::vector<int>& env_ids, const std::vector<Predicate>& preds);
  std::size_t num_predicates(int env) const;

  // Runs K control steps for each env of env_ids (all when empty); actions is
  // [ids.size(), K, action_dim()]. An env stops at its first successful step (done from there
  // on); envs already successful, unstable or errored execute nothing. Steps not executed
  // repeat the env's last observation. Returns the ids that hit a MuJoCo error.
  // `check` (optional) runs first under the call lock (the binding checks the renderer there).
  // An interrupt or close() stops every env at its next control-step boundary and throws
  // (EnvBatch::parallel); the envs keep the control steps they ran.
  std::vector<int> run(const double* actions, int K, const std::vector<int>& env_ids,
                       const ChunkOutputs& out, RenderMode mode, const FrameTarget* frames,
                       const std::function<void()>& check = {});

  std::uint8_t* episode_success() { return success_.data(); }

  // The pieces of run() for callers that run envs of several runners in one job (ChunkPool).
  // check_run_args throws std::invalid_argument for arguments run() refuses.
  void check_run_args(int K, const ChunkOutputs& out, RenderMode mode,
                      const FrameTarget* frames) const;
  // One env's chunk (actions: [K, action_dim()]) on pool worker `worker`; the caller holds
  // the batch's call lock. Returns false when the env hit a MuJoCo error.
  bool run_env(int env, int worker, const double* actions, int K, const ChunkOutputs& out,
               RenderMode mode, const FrameTarget* frames);
  const std::shared_ptr<EnvBatch>& batch() const { return batch_; }

 private:
  void record(int env, const mjData* d, const ChunkOutputs& out, int k) const;

  std::shared_ptr<EnvBatch> batch_;
  OscController controller_;
  RobotObservation obs_;
  int substeps_;
  std::vector<OscState> states_;
  std::vector<std::vector<Predicate>> predicates_;
  std::vector<std::uint8_t> success_;
  std::vector<std::unique_ptr<OscScratch>> scratch_;  // one per pool worker
};

}  // namespace vlarl
