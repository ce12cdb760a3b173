// Turns MuJoCo's fatal errors into C++ exceptions instead of process exits.
//
// mju_error() normally prints and calls exit(). MuJoCo (>= 3.2) looks up a thread-local error
// callback before the global mju_user_error; guarded() installs one for the calling thread only,
// so Python's own `mujoco` module (which owns the global handlers) is left alone and every worker
// thread recovers independently. The callback longjmps back to guarded(): MuJoCo's C frames have
// no destructors, and the frames between guarded() and MuJoCo must have none either, which is why
// guarded() takes a plain function pointer.
#pragma once

#include <stdexcept>
#include <string>

#include <mujoco/mujoco.h>

namespace vlarl {

class MujocoError : public std::runtime_error {
 public:
  explicit MujocoError(const std::string& what) : std::runtime_error(what) {}
};

// Runs fn(ctx). Returns true on success; on a MuJoCo error returns false and stores the message.
// Warnings raised meanwhile are recorded (last_warning()) instead of being printed.
bool guarded_call(void (*fn)(void* ctx), void* ctx, std::string* error_message);

// Same as guarded_call but throws MujocoError("<what>: <message>") on error.
void guarded_or_throw(const char* what, void (*fn)(void* ctx), void* ctx);

// mj_forward / mj_resetData under guarded_call (false + message on a MuJoCo error). After an
// error inside a step, guarded_reset restores the data's consistency (its stack markers).
bool guarded_forward(const mjModel* m, mjData* d, std::string* error_message);
bool guarded_reset(const mjModel* m, mjData* d, std::string* error_message);

// The count of MuJoCo's bad qpos/qvel/qacc warnings d has seen: when it changes across a step,
// MuJoCo found the state unstable (and reset it).
int bad_state_warnings(const mjData* d);

// The last MuJoCo warning seen on this thread inside a guarded call ("" if none); clears it.
std::string take_last_warning();

}  // namespace vlarl
