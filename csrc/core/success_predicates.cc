#include "success_predicates.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace vlarl {
namespace {

void check_object(const char* what, ObjectType type, int id, const mjModel* m, bool allow_none) {
  int size = 0;
  switch (type) {
    case ObjectType::kNone:
      if (allow_none) return;
      throw std::invalid_argument(std::string("Predicate.") + what + ": type must be body or site");
    case ObjectType::kBody: size = m->nbody; break;
    case ObjectType::kSite: size = m->nsite; break;
    default:
      throw std::invalid_argument(std::string("Predicate.") + what + ": unknown type " +
                                  std::to_string(static_cast<int>(type)));
  }
  if (id < 0 || id >= size) {
    throw std::invalid_argument(std::string("Predicate.") + what + ": id " + std::to_string(id) +
                                " is out of range [0, " + std::to_string(size) + ")");
  }
}

const double* position(ObjectType type, int id, const mjData* d) {
  return type == ObjectType::kSite ? d->site_xpos + 3 * id : d->xpos + 3 * id;
}

const double* orientation(ObjectType type, int id, const mjData* d) {
  return type == ObjectType::kSite ? d->site_xmat + 9 * id : d->xmat + 9 * id;
}

bool contains(const std::vector<int>& sorted, int v) {
  return std::binary_search(sorted.begin(), sorted.end(), v);
}

}  // namespace

void Predicate::validate(const mjModel* m) const {
  switch (kind) {
    case PredicateKind::kRegion:
      check_object("point", point_type, point_id, m, false);
      check_object("frame", frame_type, frame_id, m, true);
      for (int i = 0; i < 3; ++i) {
        if (!(low[i] <= high[i])) {
          throw std::invalid_argument("Predicate.low/high: low[" + std::to_string(i) + "] = " +
                                      std::to_string(low[i]) + " exceeds high = " +
                                      std::to_string(high[i]));
        }
      }
      return;
    case PredicateKind::kContact:
      if (geoms_a.empty() || geoms_b.empty()) {
        throw std::invalid_argument("Predicate.geoms_a/geoms_b: both sets must be non-empty");
      }
      for (const auto* set : {&geoms_a, &geoms_b}) {
        if (!std::is_sorted(set->begin(), set->end())) {
          throw std::invalid_argument("Predicate.geoms_a/geoms_b: sets must be sorted");
        }
        for (int g : *set) {
          if (g < 0 || g >= m->ngeom) {
            throw std::invalid_argument("Predicate.geoms: geom id " + std::to_string(g) +
                                        " is out of range [0, " + std::to_string(m->ngeom) + ")");
          }
        }
      }
      return;
    case PredicateKind::kOnTop:
      check_object("point", point_type, point_id, m, false);
      check_object("frame", frame_type, frame_id, m, false);
      return;
    case PredicateKind::kSiteUnder:
    case PredicateKind::kSiteInBox:
      check_object("point", point_type, point_id, m, false);
      if (frame_type != ObjectType::kSite) {
        throw std::invalid_argument("Predicate.frame: this kind needs a site frame");
      }
      check_object("frame", frame_type, frame_id, m, false);
      return;
    case PredicateKind::kJointAbove:
    case PredicateKind::kJointBelow:
      if (qpos_adr < 0 || qpos_adr >= m->nq) {
        throw std::invalid_argument("Predicate.qpos_adr: " + std::to_string(qpos_adr) +
                                    " is out of range [0, " + std::to_string(m->nq) + ")");
      }
      return;
  }
  throw std::invalid_argument("Predicate.kind: unknown kind " +
                              std::to_string(static_cast<int>(kind)));
}

bool evaluate(const Predicate& p, const mjModel* m, const mjData* d) {
  (void)m;
  switch (p.kind) {
    case PredicateKind::kRegion: {
      const double* x = position(p.point_type, p.point_id, d);
      double local[3] = {x[0], x[1], x[2]};
      if (p.frame_type != ObjectType::kNone) {
        const double* o = position(p.frame_type, p.frame_id, d);
        const double* R = orientation(p.frame_type, p.frame_id, d);
        const double rel[3] = {x[0] - o[0], x[1] - o[1], x[2] - o[2]};
        for (int i = 0; i < 3; ++i) {
          local[i] = R[0 * 3 + i] * rel[0] + R[1 * 3 + i] * rel[1] + R[2 * 3 + i] * rel[2];
        }
      }
      for (int i = 0; i < 3; ++i) {
        if (!(local[i] >= p.low[i] && local[i] <= p.high[i])) return false;
      }
      return true;
    }
    case PredicateKind::kContact:
      for (int c = 0; c < d->ncon; ++c) {
        const int g1 = d->contact[c].geom[0], g2 = d->contact[c].geom[1];
        if ((contains(p.geoms_a, g1) && contains(p.geoms_b, g2)) ||
            (contains(p.geoms_a, g2) && contains(p.geoms_b, g1))) {
          return true;
        }
      }
      return false;
    case PredicateKind::kOnTop: {
      const double* x = position(p.point_type, p.point_id, d);
      const double* f = position(p.frame_type, p.frame_id, d);
      const double dx = f[0] - x[0], dy = f[1] - x[1];
      return f[2] <= x[2] && std::sqrt(dx * dx + dy * dy) < p.threshold;
    }
    case PredicateKind::kSiteUnder: {
      const double* x = position(p.point_type, p.point_id, d);
      const double* o = position(p.frame_type, p.frame_id, d);
      const double* R = orientation(p.frame_type, p.frame_id, d);
      const double rel[3] = {x[0] - o[0], x[1] - o[1], x[2] - o[2]};
      double dd[3];
      for (int i = 0; i < 3; ++i) {
        dd[i] = R[i * 3 + 0] * rel[0] + R[i * 3 + 1] * rel[1] + R[i * 3 + 2] * rel[2];
      }
      return p.size[2] - p.below < dd[2] && dd[2] < p.size[2] + p.above &&
             std::fabs(dd[0]) < p.size[0] && std::fabs(dd[1]) < p.size[1];
    }
    case PredicateKind::kSiteInBox: {
      const double* x = position(p.point_type, p.point_id, d);
      const double* o = position(p.frame_type, p.frame_id, d);
      const double* R = orientation(p.frame_type, p.frame_id, d);
      for (int i = 0; i < 3; ++i) {
        const double t = std::fabs(R[i * 3 + 0] * p.size[0] + R[i * 3 + 1] * p.size[1] +
                                   R[i * 3 + 2] * p.size[2]);
        double lb = o[i] - t;
        const double ub = o[i] + t;
        if (i == 2) lb -= p.below;
        if (!(x[i] > lb && x[i] < ub)) return false;
      }
      return true;
    }
    case PredicateKind::kJointAbove:
      return d->qpos[p.qpos_adr] > p.threshold;
    case PredicateKind::kJointBelow:
      return d->qpos[p.qpos_adr] < p.threshold;
  }
  return false;
}

bool evaluate_all(const std::vector<Predicate>& preds, const mjModel* m, const mjData* d) {
  if (preds.empty()) return false;
  for (const auto& p : preds) {
    if (!evaluate(p, m, d)) return false;
  }
  return true;
}

}  // namespace vlarl
