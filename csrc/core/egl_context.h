// Headless OpenGL contexts through EGL, for rendering inside the engine's worker threads.
//
// libEGL is loaded with dlopen at first use (no build-time dependency on EGL headers or
// libraries). The EGL display of a device is created once per process and kept until exit
// (terminating a display that another library, e.g. Python's mujoco, also uses breaks it).
// Contexts are surfaceless (EGL_KHR_surfaceless_context): MuJoCo renders into its own
// offscreen framebuffer. A context is current on at most one thread at a time; the renderer
// makes it current around each use and releases it afterwards, so it can be freed from any
// thread, even after the thread that used it has exited.
#pragma once

#include <string>
#include <vector>

namespace vlarl {

class EglContext {
 public:
  // Creates an OpenGL context on EGL device `device_index` (EGL_EXT_device_enumeration order);
  // -1 picks the first device whose display initialises. Throws std::runtime_error naming the
  // step that failed when EGL is unusable.
  explicit EglContext(int device_index);
  ~EglContext();
  EglContext(const EglContext&) = delete;
  EglContext& operator=(const EglContext&) = delete;

  // Binds the context (no surface) to the calling thread; throws on failure.
  void make_current();
  // Unbinds whatever context is current on the calling thread.
  void release();

  int device_index() const { return device_index_; }
  void* handle() const { return context_; }
  void* display() const { return display_; }

 private:
  void* display_ = nullptr;
  void* context_ = nullptr;
  int device_index_ = -1;
};

// Makes `context` current on the calling thread for the scope's lifetime, then restores
// whatever binding the thread had before (none on worker threads; possibly another library's
// context on the Python thread).
class EglCurrentScope {
 public:
  explicit EglCurrentScope(EglContext& context);
  ~EglCurrentScope();
  EglCurrentScope(const EglCurrentScope&) = delete;
  EglCurrentScope& operator=(const EglCurrentScope&) = delete;

 private:
  void* display_ = nullptr;
  void* draw_ = nullptr;
  void* read_ = nullptr;
  void* context_ = nullptr;
  bool restore_ = false;
};

// "" when an EGL display can be initialised on `device_index`, else why not.
std::string egl_unavailable_reason(int device_index);

// Number of EGL devices (0 when EGL or EGL_EXT_device_enumeration is missing).
int egl_device_count();

// One EGL device (EGL_EXT_device_enumeration order) as its driver describes it.
struct EglDeviceInfo {
  int index = -1;         // the EGL device index (what EglContext takes); not a CUDA ordinal
  int cuda_device = -1;   // EGL_CUDA_DEVICE_NV (EGL_NV_device_cuda, NVIDIA's driver); -1: none
  std::string extensions;  // the device's own extension string (eglQueryDeviceStringEXT)
  std::string drm_file;    // EGL_DRM_DEVICE_FILE_EXT ("" when the driver gives none)
};

// Every EGL device with its CUDA ordinal where the driver reports one (empty when EGL or
// EGL_EXT_device_enumeration is missing). Devices of other drivers (Mesa) have cuda_device -1.
std::vector<EglDeviceInfo> egl_devices();

// "<GL_RENDERER> | <GL_VERSION>" of the context current on the calling thread ("" if none).
std::string current_gl_renderer();

// The largest offscreen frame side (pixels) the context current on the calling thread supports:
// min(GL_MAX_RENDERBUFFER_SIZE, GL_MAX_VIEWPORT_DIMS); 0 if unknown.
int current_gl_max_framebuffer_size();

}  // namespace vlarl
