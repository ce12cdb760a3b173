#include "batch_renderer.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>

#include "mujoco_guard.h"

namespace vlarl {

struct BatchRenderer::Worker {
  std::unique_ptr<EglContext> gl;
  mjvScene scene;
  mjrContext context;
  bool scene_made = false;
  bool context_made = false;
  std::vector<unsigned char> scratch;  // one camera, OpenGL row order
};

namespace {

// Plain structs and functions (no destructors) so that a MuJoCo error can longjmp over them.
struct MakeCtx {
  const mjModel* model;
  mjvScene* scene;
  mjrContext* context;
  int max_geom;
};
void make_scene_and_context(void* p) {
  auto* c = static_cast<MakeCtx*>(p);
  mjv_defaultScene(c->scene);
  mjv_makeScene(c->model, c->scene, c->max_geom);
  mjr_defaultContext(c->context);
  mjr_makeContext(c->model, c->context, mjFONTSCALE_150);
  mjr_setBuffer(mjFB_OFFSCREEN, c->context);
}

struct FreeCtx {
  mjvScene* scene;
  mjrContext* context;
};
void free_context(void* p) {
  auto* c = static_cast<FreeCtx*>(p);
  if (c->context) mjr_freeContext(c->context);
}

struct RenderCtx {
  const mjModel* model;
  mjData* data;
  const mjvOption* option;
  const mjvPerturb* perturb;
  mjvCamera* camera;
  mjvScene* scene;
  mjrContext* context;
  mjrRect viewport;
  unsigned char* rgb;
  bool shadows_reflections;
};
void update_scene(void* p) {
  auto* c = static_cast<RenderCtx*>(p);
  mjv_updateScene(c->model, c->data, c->option, c->perturb, c->camera, mjCAT_ALL, c->scene);
  if (!c->shadows_reflections) {
    c->scene->flags[mjRND_SHADOW] = 0;
    c->scene->flags[mjRND_REFLECTION] = 0;
  }
}
void render_and_read(void* p) {
  auto* c = static_cast<RenderCtx*>(p);
  mjr_setBuffer(mjFB_OFFSCREEN, c->context);
  mjr_render(c->viewport, c->scene, c->context);
  mjr_readPixels(c->rgb, nullptr, c->viewport, c->context);
}
void render_camera(void* p) {
  update_scene(p);
  render_and_read(p);
}

// src: H rows of W RGB pixels, bottom row first (glReadPixels). dst: in `convention`.
void convert(const unsigned char* src, unsigned char* dst, int height, int width,
             ImageConvention convention) {
  const std::size_t row = static_cast<std::size_t>(width) * 3;
  switch (convention) {
    case ImageConvention::kOpenGL:
      std::memcpy(dst, src, row * height);
      return;
    case ImageConvention::kTopDown:
      for (int r = 0; r < height; ++r) {
        std::memcpy(dst + row * r, src + row * (height - 1 - r), row);
      }
      return;
    case ImageConvention::kRotate180:
      for (int r = 0; r < height; ++r) {
        const unsigned char* s = src + row * (height - 1 - r);
        unsigned char* d = dst + row * r;
        for (int c = 0; c < width; ++c) {
          const unsigned char* px = s + 3 * (width - 1 - c);
          d[3 * c] = px[0];
          d[3 * c + 1] = px[1];
          d[3 * c + 2] = px[2];
        }
      }
      return;
  }
}

std::mutex& make_context_mutex() {
  // MuJoCo loads OpenGL function pointers into process-wide tables in mjr_makeContext.
  static std::mutex mu;
  return mu;
}

}  // namespace

BatchRenderer::BatchRenderer(std::shared_ptr<EnvBatch> batch, const RenderOptions& options)
    : batch_(std::move(batch)), options_(options) {
  if (!batch_) throw std::invalid_argument("batch is null");
  if (batch_->closed()) throw std::invalid_argument("batch: the engine is closed");
  if (options_.cameras.empty()) {
    throw std::invalid_argument("cameras must name at least one camera, got an empty list");
  }
  if (options_.height < 1 || options_.width < 1) {
    throw std::invalid_argument("height and width must be >= 1, got height=" +
                                std::to_string(options_.height) +
                                " width=" + std::to_string(options_.width));
  }
  if (options_.max_geom < 1) {
    throw std::invalid_argument("max_geom must be >= 1, got " + std::to_string(options_.max_geom));
  }
  const int conv = static_cast<int>(options_.convention);
  if (conv < 0 || conv > 2) {
    throw std::invalid_argument("convention must be 0 (top-down), 1 (OpenGL) or 2 (rotate 180), "
                                "got " + std::to_string(conv));
  }
  const mjModel* m = batch_->model();
  for (const std::string& name : options_.cameras) {
    const int id = mj_name2id(m, mjOBJ_CAMERA, name.c_str());
    if (id < 0) {
      std::string known;
      for (int c = 0; c < m->ncam; ++c) {
        const char* n = mj_id2name(m, mjOBJ_CAMERA, c);
        known += (c ? ", " : "") + std::string(n ? n : "<unnamed>");
      }
      throw std::invalid_argument("camera '" + name + "' is not in the model (cameras: " +
                                  (known.empty() ? "none" : known) + ")");
    }
    camera_ids_.push_back(id);
  }
  num_envs_ = batch_->num_envs();
  frame_bytes_ = camera_ids_.size() * static_cast<std::size_t>(options_.height) *
                 static_cast<std::size_t>(options_.width) * 3;

  // The renderer's view of the model: the batch's arrays, its own offscreen buffer settings.
  mjModel view = *m;
  view.vis.global.offwidth = options_.width;
  view.vis.global.offheight = options_.height;
  if (options_.fast) view.vis.quality.offsamples = 0;

  CallLock lock = batch_->lock_call("BatchRenderer");
  ThreadPool& pool = batch_->pool(lock);
  workers_.resize(pool.size());
  for (auto& w : workers_) w = std::make_unique<Worker>();
  try {
    pool.on_each_worker([&](int worker) {
      std::lock_guard<std::mutex> guard(make_context_mutex());
      Worker& w = *workers_[worker];
      w.gl = std::make_unique<EglContext>(options_.egl_device);
      EglCurrentScope current(*w.gl);
      const int max_size = current_gl_max_framebuffer_size();
      if (worker == 0) {
        gl_renderer_ = current_gl_renderer();
        max_size_ = max_size;
        egl_device_ = w.gl->device_index();
      }
      if (max_size > 0 && (options_.height > max_size || options_.width > max_size)) {
        throw std::invalid_argument(
            "height=" + std::to_string(options_.height) + ", width=" +
            std::to_string(options_.width) + ": the frame exceeds the renderer's maximum size of " +
            std::to_string(max_size) + " x " + std::to_string(max_size) +
            " pixels (GL_MAX_RENDERBUFFER_SIZE of " + current_gl_renderer() + ")");
      }
      MakeCtx ctx{&view, &w.scene, &w.context, options_.max_geom};
      std::string error;
      const bool ok = guarded_call(&make_scene_and_context, &ctx, &error);
      w.scene_made = w.context_made = true;  // mjv/mjr free functions accept partial objects
      if (!ok) throw std::runtime_error("OpenGL context setup (mjr_makeContext) failed: " + error);
      w.scratch.resize(static_cast<std::size_t>(options_.height) * options_.width * 3);
    });
    // The frame buffer once the contexts exist (a size the GL cannot render allocates nothing).
    const std::size_t total = (frame_bytes_ * num_envs_ + 63) / 64 * 64;
    auto* buffer = static_cast<std::uint8_t*>(std::aligned_alloc(64, total));
    if (!buffer) throw std::bad_alloc();
    std::memset(buffer, 0, total);
    frames_ = std::shared_ptr<std::uint8_t>(buffer, [](std::uint8_t* p) { std::free(p); });
    close_hook_ = batch_->add_close_hook(lock, [this] { free_locked(); });
  } catch (...) {
    free_locked();
    throw;
  }
}

BatchRenderer::~BatchRenderer() { close(); }

void BatchRenderer::close() {
  if (closed_.load()) return;
  CallLock lock = batch_->lock_state("BatchRenderer.close");  // waits for a running call
  if (close_hook_ >= 0) batch_->remove_close_hook(lock, close_hook_);
  close_hook_ = -1;
  free_locked();
}

void BatchRenderer::free_locked() {
  if (closed_.exchange(true)) return;
  for (auto& w : workers_) {
    if (!w) continue;
    if (w->gl) {
      try {
        EglCurrentScope current(*w->gl);
        FreeCtx ctx{&w->scene, w->context_made ? &w->context : nullptr};
        guarded_call(&free_context, &ctx, nullptr);
      } catch (const std::exception&) {
        // The display is gone (e.g. terminated at exit): GL objects went with it.
      }
    }
    if (w->scene_made) mjv_freeScene(&w->scene);
    w->gl.reset();
  }
  workers_.clear();
}

void BatchRenderer::check_open(const char* what) const {
  if (closed_.load()) throw EngineClosed(std::string(what) + ": the renderer is closed");
}

mjvOption BatchRenderer::scene_option() const {
  mjvOption option;
  mjv_defaultOption(&option);
  for (int g = 0; g < mjNGROUP; ++g) option.geomgroup[g] = options_.geom_groups[g] ? 1 : 0;
  return option;
}

void BatchRenderer::render_env(int env, int worker, std::uint8_t* out) {
  check_open("render_env");
  if (worker < 0 || worker >= num_workers()) {
    throw std::out_of_range("worker " + std::to_string(worker) + " is out of range [0, " +
                            std::to_string(num_workers()) + ")");
  }
  Worker& w = *workers_[worker];
  const mjvOption option = scene_option();
  mjvPerturb perturb;
  mjv_defaultPerturb(&perturb);
  mjvCamera camera;
  mjv_defaultCamera(&camera);
  camera.type = mjCAMERA_FIXED;

  EglCurrentScope current(*w.gl);
  const std::size_t camera_bytes = frame_bytes_ / camera_ids_.size();
  for (std::size_t c = 0; c < camera_ids_.size(); ++c) {
    camera.fixedcamid = camera_ids_[c];
    // OpenGL's row order is the output's: read straight into it, else via the scratch buffer.
    const bool direct = options_.convention == ImageConvention::kOpenGL;
    unsigned char* target = direct ? out + camera_bytes * c : w.scratch.data();
    RenderCtx ctx{batch_->model(), batch_->data(env), &option, &perturb, &camera,
                  &w.scene, &w.context, mjrRect{0, 0, options_.width, options_.height},
                  target, !options_.fast};
    std::string error;
    if (!guarded_call(&render_camera, &ctx, &error)) {
      throw MujocoError("render of env " + std::to_string(env) + ", camera '" +
                        options_.cameras[c] + "': " + error);
    }
    if (!direct) {
      convert(w.scratch.data(), out + camera_bytes * c, options_.height, options_.width,
              options_.convention);
    }
  }
}

void BatchRenderer::render(const std::vector<int>& env_ids) {
  const std::vector<int> ids = batch_->resolve_ids(env_ids);
  CallLock lock = batch_->lock_call("render");
  check_open("render");
  batch_->parallel(lock, static_cast<int>(ids.size()), [&](int slot, int worker) {
    render_env(ids[slot], worker, frame(ids[slot]));
  }, "render");
}

std::vector<double> BatchRenderer::time_raw_render(int env, int camera, int repeats) {
  check_open("time_raw_render");
  batch_->resolve_ids({env});
  if (camera < 0 || camera >= num_cameras()) {
    throw std::out_of_range("camera index " + std::to_string(camera) + " is out of range [0, " +
                            std::to_string(num_cameras()) + ")");
  }
  if (repeats < 1) throw std::invalid_argument("repeats must be >= 1, got " + std::to_string(repeats));
  std::vector<double> seconds(repeats);
  CallLock lock = batch_->lock_call("time_raw_render");
  check_open("time_raw_render");
  batch_->parallel(lock, 1, [&](int, int worker) {
    Worker& w = *workers_[worker];
    const mjvOption option = scene_option();
    mjvPerturb perturb;
    mjv_defaultPerturb(&perturb);
    mjvCamera cam;
    mjv_defaultCamera(&cam);
    cam.type = mjCAMERA_FIXED;
    cam.fixedcamid = camera_ids_[camera];
    EglCurrentScope current(*w.gl);
    RenderCtx ctx{batch_->model(), batch_->data(env), &option, &perturb, &cam,
                  &w.scene, &w.context, mjrRect{0, 0, options_.width, options_.height},
                  w.scratch.data(), !options_.fast};
    guarded_or_throw("mjv_updateScene", &update_scene, &ctx);
    for (int i = 0; i < repeats; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      guarded_or_throw("mjr_render", &render_and_read, &ctx);
      seconds[i] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
  }, "time_raw_render");
  return seconds;
}

}  // namespace vlarl
