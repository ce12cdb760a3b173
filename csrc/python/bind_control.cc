// Python face of the chunk runner (native OSC_POSE control, whole-chunk execution, success
// predicates). Outputs are written into numpy arrays owned by the Python layer; the GIL is
// released while chunks run.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "../core/chunk_runner.h"
#include "../core/env_batch.h"
#include "../core/mujoco_guard.h"
#include "../core/small_linalg.h"
#include "bindings.h"

#if __has_include("../core/batch_renderer.h")
#include "../core/batch_renderer.h"
#define VLARL_HAVE_RENDERER 1
#endif

namespace py = pybind11;

namespace vlarl {
namespace {

using RunnerPtr = std::shared_ptr<ChunkRunner>;
using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;

template <typename T>
T item(const py::dict& d, const char* key) {
  if (!d.contains(key)) throw py::key_error(std::string("missing key '") + key + "'");
  return d[key].cast<T>();
}

void fill6(const py::dict& d, const char* key, double out[6]) {
  auto v = item<std::vector<double>>(d, key);
  if (v.size() != 6) {
    throw py::value_error(std::string(key) + ": expected 6 values, got " +
                          std::to_string(v.size()));
  }
  for (int i = 0; i < 6; ++i) out[i] = v[i];
}

OscSpec spec_from_dict(const py::dict& d) {
  OscSpec s;
  s.eef_site = item<int>(d, "eef_site");
  s.qpos_index = item<std::vector<int>>(d, "qpos_index");
  s.qvel_index = item<std::vector<int>>(d, "qvel_index");
  s.arm_actuators = item<std::vector<int>>(d, "arm_actuators");
  s.torque_low = item<std::vector<double>>(d, "torque_low");
  s.torque_high = item<std::vector<double>>(d, "torque_high");
  fill6(d, "input_min", s.input_min);
  fill6(d, "input_max", s.input_max);
  fill6(d, "output_min", s.output_min);
  fill6(d, "output_max", s.output_max);
  fill6(d, "kp", s.kp);
  fill6(d, "kd", s.kd);
  s.nullspace_kp = item<double>(d, "nullspace_kp");
  s.uncouple_pos_ori = item<bool>(d, "uncouple_pos_ori");
  if (!d["position_limits"].is_none()) {
    auto lim = d["position_limits"].cast<std::vector<std::vector<double>>>();
    if (lim.size() != 2 || lim[0].size() != 3 || lim[1].size() != 3) {
      throw py::value_error("position_limits: expected shape (2, 3)");
    }
    s.has_position_limits = true;
    for (int i = 0; i < 3; ++i) {
      s.position_low[i] = lim[0][i];
      s.position_high[i] = lim[1][i];
    }
  }
  s.gripper_actuators = item<std::vector<int>>(d, "gripper_actuators");
  s.gripper_sign = item<std::vector<double>>(d, "gripper_sign");
  s.gripper_speed = item<double>(d, "gripper_speed");
  return s;
}

Predicate predicate_from_dict(const py::dict& d) {
  Predicate p;
  p.kind = static_cast<PredicateKind>(item<int>(d, "kind"));
  if (d.contains("point_type")) p.point_type = static_cast<ObjectType>(item<int>(d, "point_type"));
  if (d.contains("point_id")) p.point_id = item<int>(d, "point_id");
  if (d.contains("frame_type")) p.frame_type = static_cast<ObjectType>(item<int>(d, "frame_type"));
  if (d.contains("frame_id")) p.frame_id = item<int>(d, "frame_id");
  for (const char* key : {"low", "high"}) {
    if (!d.contains(key)) continue;
    auto v = item<std::vector<double>>(d, key);
    if (v.size() != 3) throw py::value_error(std::string(key) + ": expected 3 values");
    double* dst = std::string(key) == "low" ? p.low : p.high;
    for (int i = 0; i < 3; ++i) dst[i] = v[i];
  }
  if (d.contains("geoms_a")) p.geoms_a = item<std::vector<int>>(d, "geoms_a");
  if (d.contains("geoms_b")) p.geoms_b = item<std::vector<int>>(d, "geoms_b");
  if (d.contains("qpos_adr")) p.qpos_adr = item<int>(d, "qpos_adr");
  if (d.contains("threshold")) p.threshold = item<double>(d, "threshold");
  if (d.contains("size")) {
    auto v = item<std::vector<double>>(d, "size");
    if (v.size() != 3) throw py::value_error("size: expected 3 values");
    for (int i = 0; i < 3; ++i) p.size[i] = v[i];
  }
  if (d.contains("below")) p.below = item<double>(d, "below");
  if (d.contains("above")) p.above = item<double>(d, "above");
  return p;
}

template <typename T>
T* checked(py::array& a, const char* name, std::vector<py::ssize_t> shape) {
  if (!py::isinstance<py::array_t<T>>(a) || !(a.flags() & py::array::c_style) ||
      !a.writeable()) {
    throw py::type_error(std::string(name) + ": expected a writeable C-contiguous array of " +
                         py::str(py::dtype::of<T>()).cast<std::string>());
  }
  if (a.ndim() != static_cast<py::ssize_t>(shape.size())) {
    throw py::value_error(std::string(name) + ": expected " + std::to_string(shape.size()) +
                          " dimensions, got " + std::to_string(a.ndim()));
  }
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (a.shape(i) != shape[i]) {
      throw py::value_error(std::string(name) + ": dimension " + std::to_string(i) +
                            " expected " + std::to_string(shape[i]) + ", got " +
                            std::to_string(a.shape(i)));
    }
  }
  return static_cast<T*>(a.mutable_data());
}

}  // namespace

ChunkOutputs chunk_outputs_from_py(const ChunkRunner& r, py::array eef_pos, py::array eef_quat,
                                   py::array gripper_qpos, py::array joint_pos, py::array done,
                                   py::array success, py::array steps) {
  const py::ssize_t N = done.shape(0), cap = done.ndim() == 2 ? done.shape(1) : 0;
  ChunkOutputs out;
  out.capacity_k = static_cast<int>(cap);
  out.done = checked<std::uint8_t>(done, "done", {N, cap});
  out.eef_pos = checked<double>(eef_pos, "eef_pos", {N, cap, 3});
  out.eef_quat = checked<double>(eef_quat, "eef_quat", {N, cap, 4});
  out.gripper_qpos = checked<double>(
      gripper_qpos, "gripper_qpos",
      {N, cap, static_cast<py::ssize_t>(r.observation().gripper_qpos.size())});
  out.joint_pos = checked<double>(
      joint_pos, "joint_pos", {N, cap, static_cast<py::ssize_t>(r.observation().joint_qpos.size())});
  out.success = checked<std::uint8_t>(success, "success", {N});
  out.steps = checked<std::int32_t>(steps, "steps", {N});
  return out;
}

RenderMode render_target_from_py(int render_mode, py::object renderer, py::object frames_every,
                                 ChunkOutputs* out, FrameTarget* target,
                                 std::function<void()>* check, std::shared_ptr<void>* keep) {
  if (render_mode < 0 || render_mode > 2) {
    throw py::value_error("render_mode must be 0, 1 or 2, got " + std::to_string(render_mode));
  }
  const auto mode = static_cast<RenderMode>(render_mode);
  if (mode == RenderMode::kNone) return mode;
#ifdef VLARL_HAVE_RENDERER
  auto holder = renderer.cast<std::shared_ptr<BatchRenderer>>();
  BatchRenderer* br = holder.get();
  if (keep) *keep = holder;
  *check = [br] { br->check_open("step_chunk"); };  // under the call lock
  target->frame_bytes = br->frame_bytes();
  target->end_frames = br->frames();
  target->render = [br](int env, int worker, std::uint8_t* dst) { br->render_env(env, worker, dst); };
  if (mode == RenderMode::kEvery) {
    const py::ssize_t N = static_cast<py::ssize_t>(br->num_envs()), cap = out->capacity_k;
    py::array fe = frames_every.cast<py::array>();
    if (!(fe.flags() & py::array::c_style) || !fe.writeable() ||
        fe.nbytes() != static_cast<py::ssize_t>(N * cap * target->frame_bytes)) {
      throw py::value_error("frames_every: expected a writeable C-contiguous "
                            "[N, K, cameras, H, W, 3] uint8 buffer");
    }
    out->frames_every = static_cast<std::uint8_t*>(fe.mutable_data());
  }
#else
  (void)renderer;
  (void)frames_every;
  (void)out;
  (void)target;
  (void)check;
  (void)keep;
  throw py::value_error("this build has no renderer: render must be 'none'");
#endif
  return mode;
}

void bind_control(py::module_& m) {
  m.attr("HAVE_CHUNK_RENDER") =
#ifdef VLARL_HAVE_RENDERER
      true;
#else
      false;
#endif
  m.def(
      "osc_axisangle_to_mat",
      [](F64 v) {
        if (v.size() != 3) throw py::value_error("v: expected 3 values");
        py::array_t<double> out({3, 3});
        OscController::axisangle_to_mat(v.data(), out.mutable_data());
        return out;
      },
      py::arg("v"), "robosuite's quat2mat(axisangle2quat(v)) with its float32 steps");

  m.def(
      "osc_inverse",
      [](F64 a) {
        if (a.ndim() != 2 || a.shape(0) != a.shape(1) || a.shape(0) < 1 || a.shape(0) > 16) {
          throw py::value_error("a: expected a square matrix of size 1 to 16");
        }
        const int n = static_cast<int>(a.shape(0));
        py::array_t<double> out({n, n});
        std::vector<double> work(2 * n * n);
        if (!invert(a.data(), n, out.mutable_data(), work.data(), 1e-13)) {
          pinv_symmetric(a.data(), n, out.mutable_data(), work.data());
        }
        return out;
      },
      py::arg("a"),
      "The controller's inverse: Gauss-Jordan, or for a (numerically) singular symmetric "
      "matrix numpy's pinv (Jacobi eigen-decomposition)");

  py::class_<ChunkRunner, RunnerPtr>(m, "ChunkRunner")
      .def(py::init([](std::shared_ptr<EnvBatch> batch, py::dict spec, py::dict obs,
                       int substeps, std::vector<double> initial_joint) {
             RobotObservation o;
             o.eef_site = item<int>(obs, "eef_site");
             o.eef_body = item<int>(obs, "eef_body");
             o.gripper_qpos = item<std::vector<int>>(obs, "gripper_qpos");
             o.joint_qpos = item<std::vector<int>>(obs, "joint_qpos");
             return std::make_shared<ChunkRunner>(std::move(batch), spec_from_dict(spec),
                                                  std::move(o), substeps,
                                                  std::move(initial_joint));
           }),
           py::arg("batch"), py::arg("spec"), py::arg("observation"), py::arg("substeps"),
           py::arg("initial_joint"))
      .def_property_readonly("substeps", &ChunkRunner::substeps)
      .def_property_readonly("action_dim", &ChunkRunner::action_dim)
      .def(
          "reset_episodes",
          [](ChunkRunner& r, py::object env_ids) {
            std::vector<int> ids = ids_from_py(env_ids);
            without_gil([&] { r.reset_episodes(ids); });
          },
          py::arg("env_ids") = py::none())
      .def(
          "set_initial_joint",
          [](ChunkRunner& r, F64 q, py::object env_ids) {
            std::vector<int> ids = ids_from_py(env_ids);
            const double* src = q.data();
            const bool broadcast = q.ndim() == 1;
            without_gil([&] { r.set_initial_joint(src, broadcast, ids); });
          },
          py::arg("q"), py::arg("env_ids") = py::none(),
          "q: [num_joints] (all given envs) or [len(env_ids), num_joints], validated by Python")
      .def(
          "initial_joint",
          [](const ChunkRunner& r, int env) { return without_gil([&] { return r.initial_joint(env); }); },
          py::arg("env"))
      .def(
          "goal",
          [](const ChunkRunner& r, int env) {
            const OscState s = without_gil([&] { return r.state(env); });
            py::array_t<double> pos(3), ori({3, 3});
            std::copy(s.goal_pos, s.goal_pos + 3, pos.mutable_data());
            std::copy(s.goal_ori, s.goal_ori + 9, ori.mutable_data());
            return py::make_tuple(pos, ori, s.gripper_action);
          },
          py::arg("env"), "(goal_pos [3], goal_ori [3, 3], gripper current_action) of env")
      .def(
          "set_goal",
          [](ChunkRunner& r, int env, F64 pos, F64 ori, F64 grip) {
            const std::size_t ng = r.num_gripper_actuators();
            if (pos.size() != 3 || ori.size() != 9 || static_cast<std::size_t>(grip.size()) != ng) {
              throw py::value_error("set_goal: expected goal_pos [3], goal_ori [3, 3] and " +
                                    std::to_string(ng) + " gripper values");
            }
            without_gil([&] { r.set_controller_state(env, pos.data(), ori.data(), grip.data()); });
          },
          py::arg("env"), py::arg("goal_pos"), py::arg("goal_ori"), py::arg("gripper_action"))
      .def(
          "set_predicates",
          [](ChunkRunner& r, py::object env_ids, py::list preds) {
            std::vector<Predicate> ps;
            for (auto p : preds) {
              if (!py::isinstance<py::dict>(p)) {
                throw py::type_error("predicates: expected resolved predicate dicts, got " +
                                     py::str(py::type::of(p).attr("__name__")).cast<std::string>());
              }
              ps.push_back(predicate_from_dict(p.cast<py::dict>()));
            }
            std::vector<int> ids = ids_from_py(env_ids);
            without_gil([&] { r.set_predicates(ids, ps); });
          },
          py::arg("env_ids"), py::arg("predicates"))
      .def(
          "num_predicates",
          [](const ChunkRunner& r, int env) { return without_gil([&] { return r.num_predicates(env); }); },
          py::arg("env"))
      .def(
          "run",
          [](ChunkRunner& r, F64 actions, py::object env_ids, py::array eef_pos,
             py::array eef_quat, py::array gripper_qpos, py::array joint_pos, py::array done,
             py::array success, py::array steps, int render_mode, py::object renderer,
             py::object frames_every) {
            const std::vector<int> ids = ids_from_py(env_ids);
            const py::ssize_t rows = ids.empty() ? done.shape(0) : ids.size();
            if (actions.ndim() != 3 || actions.shape(0) != rows ||
                actions.shape(2) != r.action_dim()) {
              throw py::value_error("actions: expected [" + std::to_string(rows) + ", K, " +
                                    std::to_string(r.action_dim()) + "]");
            }
            const int K = static_cast<int>(actions.shape(1));
            ChunkOutputs out = chunk_outputs_from_py(r, eef_pos, eef_quat, gripper_qpos,
                                                     joint_pos, done, success, steps);
            FrameTarget target;
            std::function<void()> check;
            const auto mode = render_target_from_py(render_mode, renderer, frames_every, &out,
                                                    &target, &check, nullptr);
            const double* acts = actions.data();
            return without_gil([&] { return r.run(acts, K, ids, out, mode, &target, check); });
          },
          py::arg("actions"), py::arg("env_ids"), py::arg("eef_pos"), py::arg("eef_quat"),
          py::arg("gripper_qpos"), py::arg("joint_pos"), py::arg("done"), py::arg("success"),
          py::arg("steps"), py::arg("render_mode") = 0, py::arg("renderer") = py::none(),
          py::arg("frames_every") = py::none(),
          "Runs K control steps; returns the ids of envs that hit a MuJoCo error.");
}

}  // namespace vlarl
