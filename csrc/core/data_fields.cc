#include "data_fields.h"

#include <cstdint>

#include <mujoco/mjxmacro.h>

namespace vlarl {
namespace {

template <typename T>
FieldType field_type();
template <>
FieldType field_type<mjtNum>() { return FieldType::kFloat64; }
template <>
FieldType field_type<int>() { return FieldType::kInt32; }
template <>
FieldType field_type<mjtByte>() { return FieldType::kUInt8; }
template <>
FieldType field_type<std::uintptr_t>() { return FieldType::kUIntPtr; }

}  // namespace

#ifndef MJ_M
#define MJ_M(n) m->n
#endif

std::vector<FieldInfo> describe_data_fields(const mjModel* m, const mjData* d) {
  MJDATA_POINTERS_PREAMBLE(m)
  std::vector<FieldInfo> fields;
  const char* base = static_cast<const char*>(d->buffer);
#define X(type, name, nr, nc)                                                          \
  fields.push_back(FieldInfo{#name, field_type<type>(), sizeof(type),                  \
                             static_cast<std::size_t>(                                 \
                                 reinterpret_cast<const char*>(d->name) - base),       \
                             static_cast<int>(m->nr), static_cast<int>(nc)});
  MJDATA_POINTERS
#undef X
  (void)nv;
  return fields;
}

void rebase_data_pointers(const mjModel* m, mjData* d, void* old_buffer, void* new_buffer) {
  char* old_base = static_cast<char*>(old_buffer);
  char* new_base = static_cast<char*>(new_buffer);
  const std::size_t size = static_cast<std::size_t>(d->nbuffer);
#define X(type, name, nr, nc)                                                   \
  {                                                                             \
    char* p = reinterpret_cast<char*>(d->name);                                 \
    if (p >= old_base && p <= old_base + size) {                                \
      d->name = reinterpret_cast<type*>(new_base + (p - old_base));             \
    }                                                                           \
  }
  MJDATA_POINTERS
#undef X
  (void)m;
  d->buffer = new_buffer;
}


}  // namespace vlarl
