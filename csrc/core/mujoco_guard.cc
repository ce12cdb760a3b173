#include "mujoco_guard.h"

#include <csetjmp>
#include <cstring>

// Thread-local handler hooks exported by libmujoco (engine_util_errmem.c) but not declared in its
// public headers; MuJoCo's own Python bindings rely on them the same way.
extern "C" {
typedef void (*mjvlarl_callback_fn)(const char*);
mjvlarl_callback_fn _mjPRIVATE__get_tls_error_fn(void);
void _mjPRIVATE__set_tls_error_fn(mjvlarl_callback_fn h);
mjvlarl_callback_fn _mjPRIVATE__get_tls_warning_fn(void);
void _mjPRIVATE__set_tls_warning_fn(mjvlarl_callback_fn h);
}

namespace vlarl {
namespace {

constexpr std::size_t kMessageSize = 1024;
thread_local std::jmp_buf* tls_jump = nullptr;
thread_local char tls_error[kMessageSize];
thread_local char tls_warning[kMessageSize];

void copy_message(char* dst, const char* msg) {
  std::strncpy(dst, msg ? msg : "(no message)", kMessageSize - 1);
  dst[kMessageSize - 1] = '\0';
}

void on_error(const char* msg) {
  copy_message(tls_error, msg);
  std::longjmp(*tls_jump, 1);
}

void on_warning(const char* msg) { copy_message(tls_warning, msg); }

}  // namespace

bool guarded_call(void (*fn)(void*), void* ctx, std::string* error_message) {
  std::jmp_buf jump;
  std::jmp_buf* const previous_jump = tls_jump;
  const mjvlarl_callback_fn previous_error = _mjPRIVATE__get_tls_error_fn();
  const mjvlarl_callback_fn previous_warning = _mjPRIVATE__get_tls_warning_fn();
  tls_jump = &jump;
  _mjPRIVATE__set_tls_error_fn(&on_error);
  _mjPRIVATE__set_tls_warning_fn(&on_warning);
  volatile bool ok = true;
  if (setjmp(jump) == 0) {
    fn(ctx);
  } else {
    ok = false;
  }
  tls_jump = previous_jump;
  _mjPRIVATE__set_tls_error_fn(previous_error);
  _mjPRIVATE__set_tls_warning_fn(previous_warning);
  if (!ok && error_message) *error_message = tls_error;
  return ok;
}

void guarded_or_throw(const char* what, void (*fn)(void*), void* ctx) {
  std::string message;
  if (!guarded_call(fn, ctx, &message)) {
    throw MujocoError(std::string(what) + ": MuJoCo error: " + message);
  }
}

namespace {

struct ModelData {
  const mjModel* m;
  mjData* d;
};
void forward_data(void* p) {
  auto* c = static_cast<ModelData*>(p);
  mj_forward(c->m, c->d);
}
void reset_data(void* p) {
  auto* c = static_cast<ModelData*>(p);
  mj_resetData(c->m, c->d);
}

}  // namespace

bool guarded_forward(const mjModel* m, mjData* d, std::string* error_message) {
  ModelData ctx{m, d};
  return guarded_call(&forward_data, &ctx, error_message);
}

bool guarded_reset(const mjModel* m, mjData* d, std::string* error_message) {
  ModelData ctx{m, d};
  return guarded_call(&reset_data, &ctx, error_message);
}

int bad_state_warnings(const mjData* d) {
  return d->warning[mjWARN_BADQPOS].number + d->warning[mjWARN_BADQVEL].number +
         d->warning[mjWARN_BADQACC].number;
}

std::string take_last_warning() {
  std::string out = tls_warning;
  tls_warning[0] = '\0';
  return out;
}

}  // namespace vlarl
