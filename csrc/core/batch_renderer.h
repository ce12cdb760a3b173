// Renders named cameras of every environment of an EnvBatch, inside the batch's worker threads.
//
// Each pool worker owns one EGL context with one mjrContext (built from the batch's shared
// model) and one mjvScene; render_env(env, worker, out) updates that worker's scene from env's
// mjData, renders each camera and writes [num_cameras, H, W, 3] uint8 pixels to `out` in the
// configured orientation. The renderer owns a frame buffer [num_envs, num_cameras, H, W, 3]
// (frame(env) is env's slot) that render() fills and the binding exposes without copies; the
// buffer's ownership is shared (frames_owner()), so views of it outlive the renderer.
//
// Threads: render(), the chunk runner's renders and time_raw_render hold the batch's call lock;
// close() takes it too (and EnvBatch::close() frees the contexts through a close hook), so a
// renderer is never freed under a running render.
//
// Visual settings are robosuite 1.4's offscreen defaults: the model's MSAA samples
// (vis.quality.offsamples), shadows, reflections, skybox, the model's lights, mjvOption
// defaults with geom group 0 (collision) hidden and groups 1 and 2 shown, and a scene of
// up to 1000 geoms. `fast` turns MSAA, shadows and reflections off (pixels then differ).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <mujoco/mujoco.h>

#include "egl_context.h"
#include "env_batch.h"

namespace vlarl {

// Row/column order of the frames written by the renderer (see docs/rendering.md).
enum class ImageConvention : int {
  kTopDown = 0,    // MuJoCo's rows flipped to top-down: what mujoco.Renderer returns (default)
  kOpenGL = 1,     // OpenGL's bottom-up rows: robosuite/LIBERO camera obs (IMAGE_CONVENTION "opengl")
  kRotate180 = 2,  // the OpenGL frame rotated 180 degrees: OpenVLA-OFT's LIBERO preprocessing
};

struct RenderOptions {
  std::vector<std::string> cameras;  // camera names in the model, at least one
  int height = 256;
  int width = 256;
  ImageConvention convention = ImageConvention::kTopDown;
  bool fast = false;      // no MSAA, shadows or reflections
  int egl_device = -1;    // EGL device index; -1: the first that works
  int max_geom = 1000;    // robosuite's MjvScene(maxgeom=1000)
  // mjvOption.geomgroup: robosuite hides group 0 (collision geoms) and shows 1 (visual) and
  // 2 (mjv_defaultOption's default); groups 3-5 are hidden as by default.
  std::uint8_t geom_groups[mjNGROUP] = {0, 1, 1, 0, 0, 0};
};

class BatchRenderer {
 public:
  // Creates one EGL context, mjrContext and mjvScene on every worker of batch's pool.
  // Throws std::invalid_argument for bad options (unknown camera, size <= 0, a size above the
  // OpenGL implementation's maximum framebuffer size) and std::runtime_error when EGL or
  // OpenGL cannot be used.
  BatchRenderer(std::shared_ptr<EnvBatch> batch, const RenderOptions& options);
  ~BatchRenderer();
  BatchRenderer(const BatchRenderer&) = delete;
  BatchRenderer& operator=(const BatchRenderer&) = delete;

  // Renders env's cameras into out ([num_cameras, H, W, 3] uint8, frame_bytes() bytes).
  // Must run on pool worker `worker` (in [0, num_workers())); each worker has its own context.
  void render_env(int env, int worker, std::uint8_t* out);

  // Renders the given envs (all when empty) in parallel into their frame() slots.
  void render(const std::vector<int>& env_ids);

  // Throws std::runtime_error("<what>: the renderer is closed") once closed.
  void check_open(const char* what) const;

  // Frees every worker's GL resources (from the calling thread, after any running call of the
  // batch); later renders throw. Idempotent.
  void close();
  bool closed() const { return closed_.load(); }

  std::size_t frame_bytes() const { return frame_bytes_; }
  std::uint8_t* frame(int env) {
    return frames_.get() + frame_bytes_ * static_cast<std::size_t>(env);
  }
  std::uint8_t* frames() { return frames_.get(); }
  // Shares ownership of the frame buffer only (views of it need not keep GL contexts alive).
  std::shared_ptr<std::uint8_t> frames_owner() const { return frames_; }
  int num_envs() const { return num_envs_; }
  int num_cameras() const { return static_cast<int>(camera_ids_.size()); }
  int num_workers() const { return static_cast<int>(workers_.size()); }
  int height() const { return options_.height; }
  int width() const { return options_.width; }
  const RenderOptions& options() const { return options_; }
  const std::vector<int>& camera_ids() const { return camera_ids_; }
  int egl_device() const { return egl_device_; }  // the device used (-1: not a device platform)
  // The largest frame side this OpenGL implementation renders (GL_MAX_RENDERBUFFER_SIZE).
  int max_size() const { return max_size_; }
  // GL_RENDERER | GL_VERSION of the contexts, e.g. "llvmpipe (LLVM 15.0.6, 256 bits) | 4.5 ...".
  const std::string& gl_renderer() const { return gl_renderer_; }

  // The raw GPU-side cost, for benchmarks: on one worker, renders env's camera `camera`
  // `repeats` times (scene updated once) and returns the seconds of each
  // mjr_render + mjr_readPixels pair.
  std::vector<double> time_raw_render(int env, int camera, int repeats);

 private:
  struct Worker;
  void free_locked();  // frees the workers' GL resources; the caller holds the call lock
  mjvOption scene_option() const;

  std::shared_ptr<EnvBatch> batch_;
  RenderOptions options_;
  std::vector<int> camera_ids_;
  int num_envs_ = 0;
  std::size_t frame_bytes_ = 0;
  std::shared_ptr<std::uint8_t> frames_;  // [num_envs, cameras, H, W, 3], 64-byte aligned
  std::vector<std::unique_ptr<Worker>> workers_;
  std::string gl_renderer_;
  int egl_device_ = -1;
  int max_size_ = 0;
  int close_hook_ = -1;
  std::atomic<bool> closed_{false};
};

}  // namespace vlarl
