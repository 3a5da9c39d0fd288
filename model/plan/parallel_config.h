// All rank arithmetic of a worker group in one value class. A group has world = tp * ep ranks;
// rank r has tensor-parallel rank r % tp inside expert-parallel group r / tp. Attention, dense
// MLPs and every expert's intermediate dimension are split over tp; routed experts are
// partitioned over ep in contiguous ranges. Nothing else computes `rank % tp`.
#ifndef EXPERTMESH_MODEL_PLAN_PARALLEL_CONFIG_H_
#define EXPERTMESH_MODEL_PLAN_PARALLEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace expertmesh::model {

struct ExpertRange {
  int64_t first = 0;  // global id of the first expert owned
  int64_t count = 0;  // experts owned: [first, first + count)
  bool Contains(int64_t expert) const { return expert >= first && expert < first + count; }
};

// [begin, begin + count) of some dimension.
struct IndexRange {
  int64_t begin = 0, count = 0;
};

// Part `index` of `total` split evenly over `parts`. InvalidArgument (naming `what`) unless parts
// divides total.
absl::StatusOr<IndexRange> EvenSplit(int64_t total, int parts, int index, std::string_view what);

struct ParallelConfig {
  int tp = 1;
  int ep = 1;
  int rank = 0;

  int WorldSize() const { return tp * ep; }
  int TpRank() const { return rank % tp; }
  int EpRank() const { return rank / tp; }
  bool Sharded() const { return WorldSize() > 1; }
  // "rank R/W (tp T/tp, ep E/ep)", for logs and messages.
  std::string ToString() const;
  // Vocabulary rows of this rank (vocab-parallel embedding and lm_head): ceil(V / world) each,
  // the last rank may hold fewer (or none).
  IndexRange VocabRows(int64_t vocab) const;
  int64_t VocabRowsPerRank(int64_t vocab) const;
  // The routed experts rank `rank` holds. REQUIRES: Validate() ok, num_experts % ep == 0.
  ExpertRange ExpertsOnRank(int64_t num_experts) const;
  // The EP rank owning `expert`. REQUIRES: num_experts % ep == 0.
  int EpRankOfExpert(int64_t expert, int64_t num_experts) const;

  // INVALID_ARGUMENT when tp or ep < 1 or rank is outside [0, tp * ep).
  absl::Status Validate() const;
};

}  // namespace expertmesh::model

#endif  // EXPERTMESH_MODEL_PLAN_PARALLEL_CONFIG_H_
