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
  // LIBERO's object-on-object test (ObjectState.check_ontop, contact aside): with p the point
  // body's and f the frame body's position, f.z <= p.z and |(f - p).xy| < threshold.
  kOnTop = 4,
  // LIBERO's SiteObject.under: d = R (p - o) with the frame site's position o and rotation R
  // (site_xmat, row-major, not transposed), size[2] - below < d.z < size[2] + above and
  // |d.x| < size[0], |d.y| < size[1] (strict).
  kSiteUnder = 5,
  // LIBERO's SiteObject.in_box: t = |R size| (per row), o - t < p < o + t strictly, the lower z
  // bound lowered by `below` (LIBERO's 0.01).
  kSiteInBox = 6,
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
  // kJointAbove / kJointBelow (kOnTop: the radius)
  int qpos_adr = -1;
  double threshold = 0.0;
  // kSiteUnder / kSiteInBox: the site's half sizes (LIBERO's SiteObject.size) and margins;
  // the point is (point_type, point_id), the site (frame_type = kSite, frame_id).
  double size[3] = {0, 0, 0};
  double below = 0.0;
  double above = 0.0;

  // Throws std::invalid_argument naming the bad field.
  void validate(const mjModel* m) const;
};

bool evaluate(const Predicate& p, const mjModel* m, const mjData* d);
bool evaluate_all(const std::vector<Predicate>& preds, const mjModel* m, const mjData* d);

}  // namespace vlarl
