// robosuite 1.4.0's OSC_POSE controller (fixed impedance, delta input) and PandaGripper action
// mapping, natively, one env at a time.
//
// Every float operation follows robosuite's code path (controllers/osc.py, base_controller.py,
// utils/control_utils.py, utils/transform_utils.py, robots/single_arm.py::control,
// robots/manipulator.py::grip_action, models/grippers/panda_gripper.py::format_action),
// including quat2mat's float32 arithmetic, so that rounding is the only difference. The linear
// algebra (numpy/numba's LAPACK inv and pinv, BLAS dot) is replaced by Gauss-Jordan inversion
// and plain loops: docs/control.md reports the resulting differences.
//
// Sequence per physics substep (robosuite's env.step: forward, controller, mj_step), where the
// caller has run mj_step1 (position + velocity stages, identical to mj_forward's for what the
// controller reads) and runs mj_step2 afterwards:
//   policy step (first substep of a control step): set_goal(action)
//   every substep: compute_control -> writes d->ctrl for the arm and gripper actuators.
#pragma once

#include <vector>

#include <mujoco/mujoco.h>

namespace vlarl {

constexpr int kMaxArmJoints = 16;

// Everything the controller reads from the robosuite env, resolved to model indexes.
struct OscSpec {
  int eef_site = -1;               // controller.eef_name (the gripper's grip_site)
  std::vector<int> qpos_index;     // arm joints' qpos addresses (controller.qpos_index)
  std::vector<int> qvel_index;     // arm joints' dof addresses (controller.qvel_index)
  std::vector<int> arm_actuators;  // robot._ref_joint_actuator_indexes
  std::vector<double> torque_low, torque_high;  // robot.torque_limits (actuator ctrlrange)
  double input_min[6], input_max[6], output_min[6], output_max[6];
  double kp[6], kd[6];
  double nullspace_kp = 10.0;  // control_utils.nullspace_torques' default joint_kp
  bool uncouple_pos_ori = true;
  bool has_position_limits = false;
  double position_low[3], position_high[3];
  // Gripper: current += sign * speed * sign(action), clipped to [-1, 1]; ctrl = bias + weight *
  // current with bias/weight from each gripper actuator's ctrlrange.
  std::vector<int> gripper_actuators;
  std::vector<double> gripper_sign;  // PandaGripper: {-1, +1}
  double gripper_speed = 0.01;
  int action_dim() const { return 6 + (gripper_actuators.empty() ? 0 : 1); }
  int num_joints() const { return static_cast<int>(qvel_index.size()); }

  // Throws std::invalid_argument naming the first inconsistent field.
  void validate(const mjModel* m) const;
};

// Per-env controller state (what robosuite keeps in its controller and gripper objects).
struct OscState {
  double goal_pos[3];
  double goal_ori[9];
  std::vector<double> gripper_action;  // gripper.current_action (per gripper actuator)
  std::vector<double> initial_joint;   // controller.initial_joint (nullspace target)
};

// Scratch memory for one worker (sized for the model once; reused every substep).
struct OscScratch {
  explicit OscScratch(const mjModel* m, const OscSpec& spec);
  std::vector<mjtNum> jacp, jacr;  // [3, nv]
  std::vector<double> J, M, Minv, buf;
};

class OscController {
 public:
  OscController(const mjModel* m, OscSpec spec);
  const OscSpec& spec() const { return spec_; }

  // robosuite's reset_goal(): goal = current eef pose; gripper command at rest (zeros).
  // Needs d's kinematics (mj_forward or mj_step1) at the current state.
  void reset(const mjData* d, OscState* state) const;

  // controller.set_goal(arm_action) of a policy step. action: [action_dim()].
  void set_goal(const mjData* d, const double* action, OscState* state) const;

  // controller.run_controller(), torque clipping, grip_action(): writes d->ctrl.
  void compute_control(mjData* d, const double* action, OscState* state,
                       OscScratch* scratch) const;

  // robosuite's quat2mat(axisangle2quat(v)) with its float32 steps (exposed for tests).
  static void axisangle_to_mat(const double v[3], double out[9]);

 private:
  const mjModel* m_;
  OscSpec spec_;
  double action_scale_[6], input_transform_[6], output_transform_[6];
};

}  // namespace vlarl
