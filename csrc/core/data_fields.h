// The table of mjData's array fields (MuJoCo's MJDATA_POINTERS X-macro), with each field's byte
// offset inside mjData::buffer. Every mjData of one model has the same layout, which is what lets
// the engine expose a field of all environments as one strided [num_envs, rows, cols] array.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <mujoco/mujoco.h>

namespace vlarl {

enum class FieldType { kFloat64, kInt32, kUInt8, kUIntPtr };

struct FieldInfo {
  std::string name;
  FieldType type;
  std::size_t elem_size;  // bytes per element
  std::size_t offset;     // bytes from mjData::buffer
  int rows;               // model-dependent count (nq, nbody, ...)
  int cols;
};

// Builds the table for model m from a data d made for it (d's pointers give the offsets).
std::vector<FieldInfo> describe_data_fields(const mjModel* m, const mjData* d);

// Rebases every buffer pointer of d from old_buffer to new_buffer (same layout, nbuffer bytes).
void rebase_data_pointers(const mjModel* m, mjData* d, void* old_buffer, void* new_buffer);

}  // namespace vlarl
