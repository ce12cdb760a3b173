// The physical limit benchmarks compare against: MuJoCo stepped by a bare C loop.
#pragma once

#include <mujoco/mujoco.h>

namespace vlarl {

// Seconds per mj_step of one mjData in a plain loop on the calling thread: `nrepeat` times,
// restart from `state` (mjSTATE_INTEGRATION layout, or qpos0 when null) and run `nstep` steps
// (the same work as nrepeat envs stepping nstep each). Only the mj_step calls are timed.
double time_raw_mj_step(const mjModel* m, const mjtNum* state, int nstep, int nrepeat);

}  // namespace vlarl
