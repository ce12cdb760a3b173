#include "raw_timing.h"

#include <chrono>
#include <stdexcept>

namespace vlarl {

double time_raw_mj_step(const mjModel* m, const mjtNum* state, int nstep, int nrepeat) {
  if (nstep < 1 || nrepeat < 1) throw std::invalid_argument("nstep and nrepeat must be >= 1");
  mjData* d = mj_makeData(m);
  if (!d) throw std::runtime_error("mj_makeData failed");
  std::chrono::steady_clock::duration total{};
  for (int r = 0; r < nrepeat; ++r) {
    if (state) {
      mj_setState(m, d, state, mjSTATE_INTEGRATION);
    } else {
      mj_resetData(m, d);
    }
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < nstep; ++i) mj_step(m, d);
    total += std::chrono::steady_clock::now() - t0;
  }
  mj_deleteData(d);
  return std::chrono::duration<double>(total).count() / (static_cast<double>(nstep) * nrepeat);
}

}  // namespace vlarl
