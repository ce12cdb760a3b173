// Success predicates evaluated natively after every control step, per env.
//
// An env's success is the conjunction of its predicates (none configured: never succeeds).
// Each predicate reads mjData as it stands after the control step's last mj_step, i.e. the
// quantities robosuite/LIBERO's _check_success reads after env.step (positions and contacts
// computed at the start of the last physics substep; joint positions at its end).
#pragma once

#include <cstdint>
#include <vector>

#include <mujoco/mujoco.h>

namespace vlarl {

enum class PredicateKind : int {
  kRegion = 0,      // a point (body/site position) inside a box, in the world or a frame
  kContact = 1,     // some contact between a geom of set A and a geom of set B
  kJointAbove = 2,  // qpos[qpos_adr] > threshold
  kJointBelow = 3,  // qpos[qpos_adr] < threshold
};

enum class ObjectType : int { kNone = 0, kBody = 1, kSite = 2 };

struct Predicate {
  PredicateKind kind = PredicateKind::kRegion;
  // kRegion: point = position of (point_type, point_id); box [low, high] in the frame of
  // (frame_type, frame_id) (kNone: world coordinates); bounds inclusive.
  ObjectType point_type = ObjectType::kBody;
  int point_id = -1;
  ObjectType frame_type = ObjectType::kNone;
  int frame_id = -1;
  double low[3] = {0, 0, 0};
  double high[3] = {0, 0, 0};
  // kContact: geom id sets (as robosuite's check_contact over d->contact[:ncon]).
  std::vector<int> geoms_a, geoms_b;
  // kJointAbove / kJointBelow
  int qpos_adr = -1;
  double threshold = 0.0;

  // Throws std::invalid_argument naming the bad field.
  void validate(const mjModel* m) const;
};

bool evaluate(const Predicate& p, const mjModel* m, const mjData* d);
bool evaluate_all(const std::vector<Predicate>& preds, const mjModel* m, const mjData* d);

}  // namespace vlarl
