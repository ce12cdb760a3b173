// Python face of BatchRenderer: the frame buffer as a numpy view (no copies; the view keeps
// the buffer alive, not the renderer and its GL contexts), GIL released around every call
// (they take the engine's call lock).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "../core/batch_renderer.h"
#include "../core/egl_context.h"
#include "bindings.h"

namespace py = pybind11;

namespace vlarl {
namespace {

using RendererPtr = std::shared_ptr<BatchRenderer>;

py::array frames_view(const RendererPtr& r) {
  const py::ssize_t h = r->height(), w = r->width(), c = r->num_cameras();
  std::vector<py::ssize_t> shape{r->num_envs(), c, h, w, 3};
  std::vector<py::ssize_t> strides{static_cast<py::ssize_t>(r->frame_bytes()), h * w * 3, w * 3,
                                   3, 1};
  using Owner = std::shared_ptr<std::uint8_t>;
  return py::array(py::dtype::of<std::uint8_t>(), shape, strides, r->frames(),
                   py::capsule(new Owner(r->frames_owner()),
                               [](void* p) { delete static_cast<Owner*>(p); }));
}

}  // namespace

void bind_render(py::module_& m) {
  m.def("egl_unavailable_reason", &egl_unavailable_reason, py::arg("device") = -1,
        "'' when an EGL display can be initialised on that device (-1: any), else why not.");
  m.def("egl_device_count", &egl_device_count);
  m.def(
      "egl_devices",
      [] {
        py::list out;
        for (const EglDeviceInfo& d : egl_devices()) {
          py::dict row;
          row["index"] = d.index;
          row["cuda_device"] = d.cuda_device;
          row["extensions"] = d.extensions;
          row["drm_file"] = d.drm_file;
          out.append(row);
        }
        return out;
      },
      "Every EGL device: {index, cuda_device (EGL_CUDA_DEVICE_NV; -1: none), extensions, "
      "drm_file}, in EGL's enumeration order.");

  py::class_<BatchRenderer, RendererPtr>(m, "BatchRenderer")
      .def(py::init([](std::shared_ptr<EnvBatch> batch, std::vector<std::string> cameras,
                       int height, int width, int convention, bool fast, int egl_device,
                       int max_geom, std::vector<int> geom_groups) {
             RenderOptions o;
             o.cameras = std::move(cameras);
             o.height = height;
             o.width = width;
             o.convention = static_cast<ImageConvention>(convention);
             o.fast = fast;
             o.egl_device = egl_device;
             o.max_geom = max_geom;
             for (int g = 0; g < mjNGROUP; ++g) o.geom_groups[g] = 0;
             for (int g : geom_groups) {
               if (g < 0 || g >= mjNGROUP) {
                 throw py::value_error("geom_groups: group " + std::to_string(g) +
                                       " is out of range [0, " + std::to_string(mjNGROUP) + ")");
               }
               o.geom_groups[g] = 1;
             }
             return without_gil(
                 [&] { return holder_releasing_gil(new BatchRenderer(std::move(batch), o)); });
           }),
           py::arg("batch"), py::arg("cameras"), py::arg("height"), py::arg("width"),
           py::arg("convention") = 0, py::arg("fast") = false, py::arg("egl_device") = -1,
           py::arg("max_geom") = 1000, py::arg("geom_groups") = std::vector<int>{1, 2},
           "convention: 0 top-down (mujoco.Renderer), 1 OpenGL rows (robosuite obs), "
           "2 rotated 180 degrees (OpenVLA-OFT LIBERO); geom_groups: the visible geom groups")
      .def(
          "render",
          [](BatchRenderer& r, py::object env_ids) {
            std::vector<int> ids = ids_from_py(env_ids);
            without_gil([&] { r.render(ids); });
          },
          py::arg("env_ids") = py::none(), "Renders the envs (all when None) into `frames`.")
      .def("close", [](BatchRenderer& r) { without_gil([&] { r.close(); }); })
      .def_property_readonly("closed", &BatchRenderer::closed)
      .def_property_readonly("frames", &frames_view,
                             "[num_envs, num_cameras, H, W, 3] uint8 view of the frame buffer")
      .def_property_readonly("frame_bytes", &BatchRenderer::frame_bytes)
      .def_property_readonly("num_envs", &BatchRenderer::num_envs)
      .def_property_readonly("num_cameras", &BatchRenderer::num_cameras)
      .def_property_readonly("num_workers", &BatchRenderer::num_workers)
      .def_property_readonly("height", &BatchRenderer::height)
      .def_property_readonly("width", &BatchRenderer::width)
      .def_property_readonly("camera_ids", &BatchRenderer::camera_ids)
      .def_property_readonly("egl_device", &BatchRenderer::egl_device)
      .def_property_readonly("gl_renderer", &BatchRenderer::gl_renderer)
      .def_property_readonly("max_size", &BatchRenderer::max_size,
                             "largest frame side the OpenGL implementation renders")
      .def(
          "time_raw_render",
          [](BatchRenderer& r, int env, int camera, int repeats) {
            return without_gil([&] { return r.time_raw_render(env, camera, repeats); });
          },
          py::arg("env"), py::arg("camera"), py::arg("repeats"),
          "Seconds of each mjr_render + mjr_readPixels on one worker (scene updated once).");
}

}  // namespace vlarl
