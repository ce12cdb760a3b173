#include "osc_controller.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "small_linalg.h"

namespace vlarl {
namespace {

constexpr double kSingularPivot = 1e-13;

double clip(double x, double lo, double hi) { return std::min(std::max(x, lo), hi); }

double sign(double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); }

void check_index(const char* what, int value, int size) {
  if (value < 0 || value >= size) {
    throw std::invalid_argument(std::string("OscSpec.") + what + ": index " +
                                std::to_string(value) + " is out of range [0, " +
                                std::to_string(size) + ")");
  }
}

// control_utils.orientation_error (numba-jitted there; plain float64 arithmetic).
void orientation_error(const double* desired, const double* current, double out[3]) {
  double sum[3] = {0, 0, 0};
  for (int c = 0; c < 3; ++c) {
    const double a0 = current[0 * 3 + c], a1 = current[1 * 3 + c], a2 = current[2 * 3 + c];
    const double b0 = desired[0 * 3 + c], b1 = desired[1 * 3 + c], b2 = desired[2 * 3 + c];
    const double cross[3] = {a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0};
    for (int i = 0; i < 3; ++i) sum[i] = c == 0 ? cross[i] : sum[i] + cross[i];
  }
  for (int i = 0; i < 3; ++i) out[i] = 0.5 * sum[i];
}

// The rows/columns of mj_fullM(qM) that belong to `dofs`, without building the full matrix:
// the same values mj_fullM copies (no arithmetic), so the result is exact.
void arm_mass_matrix(const mjModel* m, const mjData* d, const std::vector<int>& dofs,
                     double* out) {
  const int n = static_cast<int>(dofs.size());
  for (int i = 0; i < n * n; ++i) out[i] = 0.0;
  for (int a = 0; a < n; ++a) {
    int j = dofs[a];
    int adr = m->dof_Madr[j];
    while (j >= 0) {
      for (int b = 0; b < n; ++b) {
        if (dofs[b] == j) {
          out[a * n + b] = d->qM[adr];
          out[b * n + a] = d->qM[adr];
        }
      }
      j = m->dof_parentid[j];
      ++adr;
    }
  }
}

}  // namespace

void OscSpec::validate(const mjModel* m) const {
  check_index("eef_site", eef_site, m->nsite);
  const int n = num_joints();
  if (n < 1 || n > kMaxArmJoints) {
    throw std::invalid_argument("OscSpec.qvel_index: expected 1 to " +
                                std::to_string(kMaxArmJoints) + " arm joints, got " +
                                std::to_string(n));
  }
  auto same_size = [n](const char* what, std::size_t size) {
    if (static_cast<int>(size) != n) {
      throw std::invalid_argument(std::string("OscSpec.") + what + ": expected " +
                                  std::to_string(n) + " entries (one per arm joint), got " +
                                  std::to_string(size));
    }
  };
  same_size("qpos_index", qpos_index.size());
  same_size("arm_actuators", arm_actuators.size());
  same_size("torque_low", torque_low.size());
  same_size("torque_high", torque_high.size());
  for (int i = 0; i < n; ++i) {
    check_index("qpos_index", qpos_index[i], m->nq);
    check_index("qvel_index", qvel_index[i], m->nv);
    check_index("arm_actuators", arm_actuators[i], m->nu);
  }
  if (gripper_sign.size() != gripper_actuators.size()) {
    throw std::invalid_argument("OscSpec.gripper_sign: expected " +
                                std::to_string(gripper_actuators.size()) +
                                " entries (one per gripper actuator), got " +
                                std::to_string(gripper_sign.size()));
  }
  for (int a : gripper_actuators) check_index("gripper_actuators", a, m->nu);
  for (int i = 0; i < 6; ++i) {
    if (!(input_max[i] != input_min[i])) {
      throw std::invalid_argument("OscSpec.input_min/input_max: equal at dimension " +
                                  std::to_string(i));
    }
  }
}

OscScratch::OscScratch(const mjModel* m, const OscSpec& spec)
    : jacp(3 * m->nv), jacr(3 * m->nv) {
  const int n = spec.num_joints();
  J.resize(6 * n);
  M.resize(n * n);
  Minv.resize(n * n);
  buf.resize(18 * n + n * n + 2 * std::max(36, n * n) + 128);
}

OscController::OscController(const mjModel* m, OscSpec spec) : m_(m), spec_(std::move(spec)) {
  spec_.validate(m);
  for (int i = 0; i < 6; ++i) {
    action_scale_[i] = std::fabs(spec_.output_max[i] - spec_.output_min[i]) /
                       std::fabs(spec_.input_max[i] - spec_.input_min[i]);
    output_transform_[i] = (spec_.output_max[i] + spec_.output_min[i]) / 2.0;
    input_transform_[i] = (spec_.input_max[i] + spec_.input_min[i]) / 2.0;
  }
}

void OscController::reset(const mjData* d, OscState* state) const {
  const int s = spec_.eef_site;
  for (int i = 0; i < 3; ++i) state->goal_pos[i] = d->site_xpos[3 * s + i];
  for (int i = 0; i < 9; ++i) state->goal_ori[i] = d->site_xmat[9 * s + i];
  state->gripper_action.assign(spec_.gripper_actuators.size(), 0.0);
  if (static_cast<int>(state->initial_joint.size()) != spec_.num_joints()) {
    throw std::logic_error("OscState.initial_joint has the wrong size");
  }
}

void OscController::axisangle_to_mat(const double v[3], double out[9]) {
  // transform_utils.axisangle2quat: angle = np.linalg.norm(vec) (x.dot(x), then sqrt).
  const double sq = v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
  const double angle = std::sqrt(sq);
  double q[4];  // x, y, z, w
  if (angle == 0.0) {  // math.isclose(angle, 0.0) with the default abs_tol 0
    q[0] = q[1] = q[2] = 0.0;
    q[3] = 1.0;
  } else {
    const double s = std::sin(angle / 2.0);
    q[3] = std::cos(angle / 2.0);
    for (int i = 0; i < 3; ++i) q[i] = (v[i] / angle) * s;
  }
  // transform_utils.quat2mat (numba): q as float32 in (w, x, y, z) order; np.dot is BLAS sdot
  // (float32 products accumulated in double, rounded to float32).
  float f[4] = {static_cast<float>(q[3]), static_cast<float>(q[0]), static_cast<float>(q[1]),
                static_cast<float>(q[2])};
  double acc = 0.0;
  for (int i = 0; i < 4; ++i) {
    const float p = f[i] * f[i];
    acc += static_cast<double>(p);
  }
  const float n = static_cast<float>(acc);
  const double eps = std::numeric_limits<double>::epsilon() * 4.0;
  if (static_cast<double>(n) < eps) {
    for (int i = 0; i < 9; ++i) out[i] = (i % 4 == 0) ? 1.0 : 0.0;
    return;
  }
  const double scale = std::sqrt(2.0 / static_cast<double>(n));
  for (int i = 0; i < 4; ++i) f[i] = static_cast<float>(static_cast<double>(f[i]) * scale);
  float q2[4][4];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) q2[i][j] = f[i] * f[j];
  auto d = [](float x) { return static_cast<double>(x); };
  out[0] = 1.0 - d(q2[2][2]) - d(q2[3][3]);
  out[1] = d(q2[1][2] - q2[3][0]);
  out[2] = d(q2[1][3] + q2[2][0]);
  out[3] = d(q2[1][2] + q2[3][0]);
  out[4] = 1.0 - d(q2[1][1]) - d(q2[3][3]);
  out[5] = d(q2[2][3] - q2[1][0]);
  out[6] = d(q2[1][3] - q2[2][0]);
  out[7] = d(q2[2][3] + q2[1][0]);
  out[8] = 1.0 - d(q2[1][1]) - d(q2[2][2]);
}

void OscController::set_goal(const mjData* d, const double* action, OscState* state) const {
  double delta[6];
  for (int i = 0; i < 6; ++i) {
    const double a = clip(action[i], spec_.input_min[i], spec_.input_max[i]);
    delta[i] = (a - input_transform_[i]) * action_scale_[i] + output_transform_[i];
  }
  const int s = spec_.eef_site;
  const double* ee_pos = d->site_xpos + 3 * s;
  const double* ee_ori = d->site_xmat + 9 * s;
  if (delta[3] != 0.0 || delta[4] != 0.0 || delta[5] != 0.0) {
    double rot[9];
    axisangle_to_mat(delta + 3, rot);
    for (int i = 0; i < 3; ++i) {
      for (int j = 0; j < 3; ++j) {
        double sum = rot[3 * i] * ee_ori[j];
        sum += rot[3 * i + 1] * ee_ori[3 + j];
        sum += rot[3 * i + 2] * ee_ori[6 + j];
        state->goal_ori[3 * i + j] = sum;
      }
    }
  }
  for (int i = 0; i < 3; ++i) {
    double g = ee_pos[i] + delta[i];
    if (spec_.has_position_limits) g = clip(g, spec_.position_low[i], spec_.position_high[i]);
    state->goal_pos[i] = g;
  }
}

void OscController::compute_control(mjData* d, const double* action, OscState* state,
                                    OscScratch* w) const {
  const mjModel* m = m_;
  const int n = spec_.num_joints();
  const int nv = m->nv;
  const int s = spec_.eef_site;
  const double* ee_pos = d->site_xpos + 3 * s;
  const double* ee_ori = d->site_xmat + 9 * s;

  // Controller.update(): site Jacobians, eef velocities (jac @ qvel over all dofs), arm blocks.
  mj_jacSite(m, d, w->jacp.data(), w->jacr.data(), s);
  double ee_vel[6];
  for (int r = 0; r < 3; ++r) {
    double vp = 0.0, vr = 0.0;
    for (int k = 0; k < nv; ++k) {
      vp += w->jacp[r * nv + k] * d->qvel[k];
      vr += w->jacr[r * nv + k] * d->qvel[k];
    }
    ee_vel[r] = vp;
    ee_vel[3 + r] = vr;
  }
  double* J = w->J.data();  // [6, n]: J_pos over J_ori
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < n; ++c) {
      J[r * n + c] = w->jacp[r * nv + spec_.qvel_index[c]];
      J[(3 + r) * n + c] = w->jacr[r * nv + spec_.qvel_index[c]];
    }
  }
  double* M = w->M.data();
  arm_mass_matrix(m, d, spec_.qvel_index, M);

  // run_controller()
  double ori_error[3];
  orientation_error(state->goal_ori, ee_ori, ori_error);
  double force[3], torque[3];
  for (int i = 0; i < 3; ++i) {
    force[i] = (state->goal_pos[i] - ee_pos[i]) * spec_.kp[i] + (-ee_vel[i]) * spec_.kd[i];
    torque[i] = ori_error[i] * spec_.kp[3 + i] + (-ee_vel[3 + i]) * spec_.kd[3 + i];
  }

  // opspace_matrices
  double* Minv = w->Minv.data();
  double* buf = w->buf.data();
  double* JMinv = buf;                   // [6, n]
  double* lambda_full_inv = JMinv + 6 * n;  // [6, 6]
  double* lambda_full = lambda_full_inv + 36;
  double* lambda_pos = lambda_full + 36;  // [3, 3]
  double* lambda_ori = lambda_pos + 9;
  double* tmp33 = lambda_ori + 9;
  double* MinvJt = tmp33 + 9;            // [n, 6]
  double* Jbar = MinvJt + 6 * n;         // [n, 6]
  double* nullspace = Jbar + 6 * n;      // [n, n]
  double* scratch = nullspace + n * n;   // inversion workspace [2 * 6 * 6] or [2 * n * n]
  // robosuite: inv(M) and pinv(lambda^-1). Gauss-Jordan equals both up to rounding for
  // matrices well away from singular; when a pivot falls to 1e-13 of the diagonal's scale, the
  // symmetric pseudo-inverse with numpy's cutoff takes over (it also equals the inverse while
  // every eigenvalue is above 1e-15 of the largest).
  auto inverse = [scratch](const double* A, int size, double* out) {
    if (!invert(A, size, out, scratch, kSingularPivot)) pinv_symmetric(A, size, out, scratch);
  };
  inverse(M, n, Minv);
  matmul(J, Minv, 6, n, n, JMinv);
  matmul_bt(JMinv, J, 6, n, 6, lambda_full_inv);
  inverse(lambda_full_inv, 6, lambda_full);
  // J_pos M^-1 J_pos^T and J_ori M^-1 J_ori^T are the diagonal blocks of lambda_full_inv,
  // computed by robosuite with the same sums in the same order.
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) tmp33[3 * i + j] = lambda_full_inv[6 * i + j];
  inverse(tmp33, 3, lambda_pos);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) tmp33[3 * i + j] = lambda_full_inv[6 * (3 + i) + 3 + j];
  inverse(tmp33, 3, lambda_ori);
  matmul_bt(Minv, J, n, n, 6, MinvJt);
  matmul(MinvJt, lambda_full, n, 6, 6, Jbar);
  matmul(Jbar, J, n, 6, n, nullspace);  // Jbar @ J_full, then I - that
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) nullspace[i * n + j] = (i == j ? 1.0 : 0.0) - nullspace[i * n + j];

  double wrench[6];
  if (spec_.uncouple_pos_ori) {
    matvec(lambda_pos, force, 3, 3, wrench);
    matvec(lambda_ori, torque, 3, 3, wrench + 3);
  } else {
    const double desired[6] = {force[0], force[1], force[2], torque[0], torque[1], torque[2]};
    matvec(lambda_full, desired, 6, 6, wrench);
  }
  double torques[kMaxArmJoints], pose[kMaxArmJoints];
  double pose_torques[kMaxArmJoints], ns[kMaxArmJoints];
  matvec_t(J, wrench, 6, n, torques);
  for (int i = 0; i < n; ++i) torques[i] += d->qfrc_bias[spec_.qvel_index[i]];

  // nullspace_torques(mass_matrix, nullspace_matrix, initial_joint, joint_pos, joint_vel)
  const double joint_kv = std::sqrt(spec_.nullspace_kp) * 2;
  for (int i = 0; i < n; ++i) {
    const double q = d->qpos[spec_.qpos_index[i]];
    const double v = d->qvel[spec_.qvel_index[i]];
    pose[i] = spec_.nullspace_kp * (state->initial_joint[i] - q) - joint_kv * v;
  }
  matvec(M, pose, n, n, pose_torques);
  matvec_t(nullspace, pose_torques, n, n, ns);
  for (int i = 0; i < n; ++i) {
    const double t = torques[i] + ns[i];
    d->ctrl[spec_.arm_actuators[i]] = clip(t, spec_.torque_low[i], spec_.torque_high[i]);
  }

  // grip_action(gripper, action[6:]): PandaGripper.format_action, then ctrl-range scaling.
  const int ng = static_cast<int>(spec_.gripper_actuators.size());
  if (ng > 0) {
    const double sg = sign(action[6]);
    for (int j = 0; j < ng; ++j) {
      const double step = spec_.gripper_sign[j] * spec_.gripper_speed * sg;
      state->gripper_action[j] = clip(state->gripper_action[j] + step, -1.0, 1.0);
      const int a = spec_.gripper_actuators[j];
      const double lo = m->actuator_ctrlrange[2 * a], hi = m->actuator_ctrlrange[2 * a + 1];
      const double bias = 0.5 * (hi + lo);
      const double weight = 0.5 * (hi - lo);
      d->ctrl[a] = bias + weight * state->gripper_action[j];
    }
  }
}

}  // namespace vlarl
