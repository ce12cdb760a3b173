#include "egl_context.h"

#include <dlfcn.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <stdexcept>
#include <vector>

namespace vlarl {
namespace {

// The few EGL types and constants used here (values from the Khronos EGL 1.5 headers).
using EGLBoolean = unsigned int;
using EGLint = std::int32_t;
using EGLenum = unsigned int;
using EGLDisplay = void*;
using EGLConfig = void*;
using EGLContext = void*;
using EGLSurface = void*;
using EGLDeviceEXT = void*;

constexpr EGLint kEglNone = 0x3038;
constexpr EGLint kEglRedSize = 0x3024;
constexpr EGLint kEglGreenSize = 0x3023;
constexpr EGLint kEglBlueSize = 0x3022;
constexpr EGLint kEglAlphaSize = 0x3021;
constexpr EGLint kEglDepthSize = 0x3025;
constexpr EGLint kEglStencilSize = 0x3026;
constexpr EGLint kEglColorBufferType = 0x303F;
constexpr EGLint kEglRgbBuffer = 0x308E;
constexpr EGLint kEglRenderableType = 0x3040;
constexpr EGLint kEglSurfaceType = 0x3033;
constexpr EGLint kEglPbufferBit = 0x0001;
constexpr EGLint kEglOpenglBit = 0x0008;
constexpr EGLenum kEglOpenglApi = 0x30A2;
constexpr EGLenum kEglPlatformDeviceExt = 0x313F;
constexpr EGLenum kEglPlatformSurfacelessMesa = 0x31DD;
constexpr EGLint kEglExtensions = 0x3055;
constexpr EGLint kEglDraw = 0x3059;
constexpr EGLint kEglCudaDeviceNv = 0x323A;      // EGL_NV_device_cuda
constexpr EGLint kEglDrmDeviceFileExt = 0x3233;  // EGL_EXT_device_drm
constexpr EGLint kEglRead = 0x305A;

struct EglApi {
  void* lib = nullptr;
  std::string error;  // why EGL cannot be used ("" if it can)
  void* (*GetProcAddress)(const char*) = nullptr;
  EGLint (*GetError)() = nullptr;
  EGLDisplay (*GetDisplay)(void*) = nullptr;
  EGLBoolean (*Initialize)(EGLDisplay, EGLint*, EGLint*) = nullptr;
  EGLBoolean (*ChooseConfig)(EGLDisplay, const EGLint*, EGLConfig*, EGLint, EGLint*) = nullptr;
  EGLBoolean (*BindAPI)(EGLenum) = nullptr;
  EGLContext (*CreateContext)(EGLDisplay, EGLConfig, EGLContext, const EGLint*) = nullptr;
  EGLBoolean (*DestroyContext)(EGLDisplay, EGLContext) = nullptr;
  EGLBoolean (*MakeCurrent)(EGLDisplay, EGLSurface, EGLSurface, EGLContext) = nullptr;
  EGLContext (*GetCurrentContext)() = nullptr;
  EGLDisplay (*GetCurrentDisplay)() = nullptr;
  EGLSurface (*GetCurrentSurface)(EGLint) = nullptr;
  const char* (*QueryString)(EGLDisplay, EGLint) = nullptr;
  EGLBoolean (*QueryDevicesEXT)(EGLint, EGLDeviceEXT*, EGLint*) = nullptr;
  EGLDisplay (*GetPlatformDisplayEXT)(EGLenum, void*, const EGLint*) = nullptr;
  EGLBoolean (*QueryDeviceAttribEXT)(EGLDeviceEXT, EGLint, std::intptr_t*) = nullptr;
  const char* (*QueryDeviceStringEXT)(EGLDeviceEXT, EGLint) = nullptr;
};

template <typename F>
bool load(EglApi& api, F& fn, const char* name) {
  void* p = dlsym(api.lib, name);
  if (!p && api.GetProcAddress) p = api.GetProcAddress(name);
  fn = reinterpret_cast<F>(p);
  return p != nullptr;
}

EglApi& egl() {
  static EglApi api = [] {
    EglApi a;
    // RTLD_GLOBAL: MuJoCo's GL loader (mjr_makeContext) finds eglGetProcAddress in the process.
    for (const char* name : {"libEGL.so.1", "libEGL.so"}) {
      a.lib = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
      if (a.lib) break;
    }
    if (!a.lib) {
      const char* why = dlerror();
      a.error = std::string("dlopen(libEGL.so.1) failed: ") + (why ? why : "unknown error") +
                " (install libegl1 and a vendor driver: libegl-mesa0 or the NVIDIA driver)";
      return a;
    }
    a.GetProcAddress = reinterpret_cast<void* (*)(const char*)>(dlsym(a.lib, "eglGetProcAddress"));
    bool ok = a.GetProcAddress != nullptr;
    ok = load(a, a.GetError, "eglGetError") && ok;
    ok = load(a, a.GetDisplay, "eglGetDisplay") && ok;
    ok = load(a, a.Initialize, "eglInitialize") && ok;
    ok = load(a, a.ChooseConfig, "eglChooseConfig") && ok;
    ok = load(a, a.BindAPI, "eglBindAPI") && ok;
    ok = load(a, a.CreateContext, "eglCreateContext") && ok;
    ok = load(a, a.DestroyContext, "eglDestroyContext") && ok;
    ok = load(a, a.MakeCurrent, "eglMakeCurrent") && ok;
    ok = load(a, a.GetCurrentContext, "eglGetCurrentContext") && ok;
    ok = load(a, a.GetCurrentDisplay, "eglGetCurrentDisplay") && ok;
    ok = load(a, a.GetCurrentSurface, "eglGetCurrentSurface") && ok;
    ok = load(a, a.QueryString, "eglQueryString") && ok;
    if (!ok) {
      a.error = "libEGL.so.1 lacks core EGL 1.4 entry points";
      return a;
    }
    load(a, a.QueryDevicesEXT, "eglQueryDevicesEXT");
    load(a, a.GetPlatformDisplayEXT, "eglGetPlatformDisplayEXT");
    load(a, a.QueryDeviceAttribEXT, "eglQueryDeviceAttribEXT");
    load(a, a.QueryDeviceStringEXT, "eglQueryDeviceStringEXT");
    return a;
  }();
  return api;
}

std::string hex(EGLint code) {
  static const char* digits = "0123456789ABCDEF";
  std::string s = "0x";
  for (int shift = 12; shift >= 0; shift -= 4) s += digits[(code >> shift) & 0xF];
  return s;
}

std::vector<EGLDeviceEXT> query_devices(EglApi& api) {
  if (!api.QueryDevicesEXT) return {};
  EGLint n = 0;
  if (!api.QueryDevicesEXT(0, nullptr, &n) || n <= 0) return {};
  std::vector<EGLDeviceEXT> devices(n);
  if (!api.QueryDevicesEXT(n, devices.data(), &n)) return {};
  devices.resize(n);
  return devices;
}

EGLDisplay try_initialize(EglApi& api, EGLDisplay display) {
  if (!display) return nullptr;
  EGLint major = 0, minor = 0;
  if (!api.Initialize(display, &major, &minor)) return nullptr;
  return display;
}

struct DisplayEntry {
  EGLDisplay display = nullptr;
  int device = -1;
  std::string error;
};

// Displays are created once per requested device index and never terminated.
DisplayEntry open_display(int device_index) {
  static std::mutex mu;
  static std::map<int, DisplayEntry> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(device_index);
  if (it != cache.end()) return it->second;

  DisplayEntry entry;
  EglApi& api = egl();
  if (!api.error.empty()) {
    entry.error = api.error;
    return cache[device_index] = entry;
  }
  const std::vector<EGLDeviceEXT> devices = query_devices(api);
  if (device_index >= 0) {
    if (device_index >= static_cast<int>(devices.size())) {
      entry.error = "EGL device index " + std::to_string(device_index) + " is out of range: " +
                    std::to_string(devices.size()) + " EGL device(s) found";
    } else if (!api.GetPlatformDisplayEXT) {
      entry.error = "eglGetPlatformDisplayEXT is missing (EGL_EXT_platform_device)";
    } else {
      entry.display = try_initialize(
          api, api.GetPlatformDisplayEXT(kEglPlatformDeviceExt, devices[device_index], nullptr));
      entry.device = device_index;
      if (!entry.display) {
        entry.error = "eglInitialize failed on EGL device " + std::to_string(device_index) +
                      " (EGL error " + hex(api.GetError()) + ")";
      }
    }
    return cache[device_index] = entry;
  }
  // Any device: the first that initialises (as mujoco.egl does), then Mesa's surfaceless
  // platform, then the default display.
  if (api.GetPlatformDisplayEXT) {
    for (std::size_t i = 0; i < devices.size() && !entry.display; ++i) {
      entry.display = try_initialize(
          api, api.GetPlatformDisplayEXT(kEglPlatformDeviceExt, devices[i], nullptr));
      entry.device = static_cast<int>(i);
    }
    if (!entry.display) {
      entry.display = try_initialize(
          api, api.GetPlatformDisplayEXT(kEglPlatformSurfacelessMesa, nullptr, nullptr));
      entry.device = -1;
    }
  }
  if (!entry.display) entry.display = try_initialize(api, api.GetDisplay(nullptr));
  if (!entry.display) {
    entry.error = "no EGL display could be initialised (" + std::to_string(devices.size()) +
                  " EGL device(s) found; last EGL error " + hex(api.GetError()) + ")";
  }
  return cache[device_index] = entry;
}

}  // namespace

std::string egl_unavailable_reason(int device_index) {
  return open_display(device_index).error;
}

int egl_device_count() {
  EglApi& api = egl();
  if (!api.error.empty()) return 0;
  return static_cast<int>(query_devices(api).size());
}

std::vector<EglDeviceInfo> egl_devices() {
  EglApi& api = egl();
  std::vector<EglDeviceInfo> out;
  if (!api.error.empty()) return out;
  const std::vector<EGLDeviceEXT> devices = query_devices(api);
  for (std::size_t i = 0; i < devices.size(); ++i) {
    EglDeviceInfo info;
    info.index = static_cast<int>(i);
    if (api.QueryDeviceStringEXT) {
      const char* ext = api.QueryDeviceStringEXT(devices[i], kEglExtensions);
      if (ext) info.extensions = ext;
      if (info.extensions.find("EGL_EXT_device_drm") != std::string::npos) {
        const char* drm = api.QueryDeviceStringEXT(devices[i], kEglDrmDeviceFileExt);
        if (drm) info.drm_file = drm;
      }
    }
    // only asked of devices that announce the extension: other drivers may set an EGL error
    if (api.QueryDeviceAttribEXT &&
        info.extensions.find("EGL_NV_device_cuda") != std::string::npos) {
      std::intptr_t ordinal = -1;
      if (api.QueryDeviceAttribEXT(devices[i], kEglCudaDeviceNv, &ordinal) && ordinal >= 0) {
        info.cuda_device = static_cast<int>(ordinal);
      }
    }
    out.push_back(std::move(info));
  }
  api.GetError();  // leave no error behind for the next caller
  return out;
}

std::string current_gl_renderer() {
  EglApi& api = egl();
  if (!api.error.empty() || !api.GetCurrentContext()) return "";
  using GetString = const unsigned char* (*)(unsigned int);
  auto get = reinterpret_cast<GetString>(api.GetProcAddress("glGetString"));
  if (!get) return "";
  const unsigned char* renderer = get(0x1F01);  // GL_RENDERER
  const unsigned char* version = get(0x1F02);   // GL_VERSION
  std::string out = renderer ? reinterpret_cast<const char*>(renderer) : "?";
  out += " | ";
  out += version ? reinterpret_cast<const char*>(version) : "?";
  return out;
}

int current_gl_max_framebuffer_size() {
  EglApi& api = egl();
  if (!api.error.empty() || !api.GetCurrentContext()) return 0;
  using GetIntegerv = void (*)(unsigned int, int*);
  auto get = reinterpret_cast<GetIntegerv>(api.GetProcAddress("glGetIntegerv"));
  if (!get) return 0;
  int renderbuffer = 0, viewport[2] = {0, 0};
  get(0x84E8, &renderbuffer);  // GL_MAX_RENDERBUFFER_SIZE: MuJoCo's offscreen buffers
  get(0x0D3A, viewport);       // GL_MAX_VIEWPORT_DIMS
  int size = renderbuffer;
  for (int v : viewport) {
    if (v > 0 && (size <= 0 || v < size)) size = v;
  }
  return size > 0 ? size : 0;
}

EglContext::EglContext(int device_index) {
  const DisplayEntry entry = open_display(device_index);
  if (!entry.display) throw std::runtime_error("EGL unavailable: " + entry.error);
  EglApi& api = egl();
  display_ = entry.display;
  device_index_ = entry.device;
  const char* extensions = api.QueryString(display_, kEglExtensions);
  if (!extensions || std::string(extensions).find("EGL_KHR_surfaceless_context") ==
                         std::string::npos) {
    throw std::runtime_error("EGL unavailable: the display lacks EGL_KHR_surfaceless_context");
  }
  // The attributes mujoco.egl and robosuite ask for; a config without pbuffer support also
  // serves (the context is used without any surface).
  EGLConfig config = nullptr;
  EGLint num_configs = 0;
  for (EGLint surface_type : {kEglPbufferBit, EGLint{0}}) {
    const EGLint attributes[] = {kEglRedSize,   8,  kEglGreenSize,   8, kEglBlueSize, 8,
                                 kEglAlphaSize, 8,  kEglDepthSize,   24, kEglStencilSize, 8,
                                 kEglColorBufferType, kEglRgbBuffer, kEglSurfaceType,
                                 surface_type, kEglRenderableType, kEglOpenglBit, kEglNone};
    if (api.ChooseConfig(display_, attributes, &config, 1, &num_configs) && num_configs >= 1) {
      break;
    }
  }
  if (num_configs < 1) {
    throw std::runtime_error("EGL unavailable: eglChooseConfig found no RGBA8/depth24/stencil8 "
                             "OpenGL config (EGL error " + hex(api.GetError()) + ")");
  }
  if (!api.BindAPI(kEglOpenglApi)) {
    throw std::runtime_error("EGL unavailable: eglBindAPI(EGL_OPENGL_API) failed (EGL error " +
                             hex(api.GetError()) + ")");
  }
  context_ = api.CreateContext(display_, config, nullptr, nullptr);
  if (!context_) {
    throw std::runtime_error("EGL unavailable: eglCreateContext failed (EGL error " +
                             hex(api.GetError()) + ")");
  }
}

EglContext::~EglContext() {
  if (!context_) return;
  EglApi& api = egl();
  if (api.GetCurrentContext() == context_) api.MakeCurrent(display_, nullptr, nullptr, nullptr);
  api.DestroyContext(display_, context_);
}

void EglContext::make_current() {
  EglApi& api = egl();
  if (api.GetCurrentContext() == context_) return;
  if (!api.MakeCurrent(display_, nullptr, nullptr, context_)) {
    throw std::runtime_error("eglMakeCurrent failed (EGL error " + hex(api.GetError()) + ")");
  }
}

void EglContext::release() {
  EglApi& api = egl();
  if (api.GetCurrentContext()) {
    EGLDisplay current = api.GetCurrentDisplay();
    api.MakeCurrent(current ? current : display_, nullptr, nullptr, nullptr);
  }
}

EglCurrentScope::EglCurrentScope(EglContext& context) {
  EglApi& api = egl();
  context_ = api.GetCurrentContext();
  if (context_ == context.handle()) return;  // already current: leave it so
  if (context_) {
    display_ = api.GetCurrentDisplay();
    draw_ = api.GetCurrentSurface(kEglDraw);
    read_ = api.GetCurrentSurface(kEglRead);
  }
  context.make_current();
  restore_ = true;
}

EglCurrentScope::~EglCurrentScope() {
  if (!restore_) return;
  EglApi& api = egl();
  if (context_) {
    api.MakeCurrent(display_, draw_, read_, context_);
  } else {
    api.MakeCurrent(api.GetCurrentDisplay(), nullptr, nullptr, nullptr);
  }
}

}  // namespace vlarl
