#include "model/plan/parallel_config.h"

#include "absl/strings/str_cat.h"

namespace expertmesh::model {

ExpertRange ParallelConfig::ExpertsOnRank(int64_t num_experts) const {
  const int64_t per_rank = num_experts / ep;
  return {EpRank() * per_rank, per_rank};
}

int ParallelConfig::EpRankOfExpert(int64_t expert, int64_t num_experts) const {
  return static_cast<int>(expert / (num_experts / ep));
}

absl::Status ParallelConfig::Validate() const {
  if (tp < 1) return absl::InvalidArgumentError(absl::StrCat("tp must be >= 1, got ", tp));
  if (ep < 1) return absl::InvalidArgumentError(absl::StrCat("ep must be >= 1, got ", ep));
  if (rank < 0 || rank >= WorldSize()) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", rank, " outside [0, ", WorldSize(), ") for tp=", tp, " ep=", ep));
  }
  return absl::OkStatus();
}

}  // namespace expertmesh::model
