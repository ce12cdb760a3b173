// The physical limit benchmarks compare against: MuJoCo stepped by a bare C loop.
#pragma once

#include <mujoco/mujoco.h>

namespace vlarl {

// Seconds per mj_step in a plain loop on the calling thread doing the engine's work without the
// engine: `num_datas` mjData (one per env), each restarted from `state` (mjSTATE_INTEGRATION
// layout, or qpos0 when null) and stepped `nstep` times, one after the other. Only the mj_step
// calls are timed.
double time_raw_mj_step(const mjModel* m, const mjtNum* state, int nstep, int num_datas);

}  // namespace vlarl
