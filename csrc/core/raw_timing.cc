#include "raw_timing.h"

#include <chrono>
#include <stdexcept>
#include <vector>

namespace vlarl {

double time_raw_mj_step(const mjModel* m, const mjtNum* state, int nstep, int num_datas) {
  if (nstep < 1 || num_datas < 1) throw std::invalid_argument("nstep and num_datas must be >= 1");
  std::vector<mjData*> datas;
  for (int i = 0; i < num_datas; ++i) {
    mjData* d = mj_makeData(m);
    if (!d) {
      for (mjData* made : datas) mj_deleteData(made);
      throw std::runtime_error("mj_makeData failed");
    }
    if (state) {
      mj_setState(m, d, state, mjSTATE_INTEGRATION);
    } else {
      mj_resetData(m, d);
    }
    datas.push_back(d);
  }
  const auto t0 = std::chrono::steady_clock::now();
  for (mjData* d : datas) {
    for (int i = 0; i < nstep; ++i) mj_step(m, d);
  }
  const auto t1 = std::chrono::steady_clock::now();
  for (mjData* d : datas) mj_deleteData(d);
  return std::chrono::duration<double>(t1 - t0).count() / (static_cast<double>(nstep) * num_datas);
}

}  // namespace vlarl
