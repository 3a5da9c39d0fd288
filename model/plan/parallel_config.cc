#include "model/plan/parallel_config.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace expertmesh::model {

absl::StatusOr<IndexRange> EvenSplit(int64_t total, int parts, int index, std::string_view what) {
  if (parts < 1 || total % parts != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        std::string(what), " (", total, ") does not divide evenly over ", parts, " ranks"));
  }
  const int64_t per = total / parts;
  return IndexRange{per * index, per};
}

std::string ParallelConfig::ToString() const {
  return absl::StrCat("rank ", rank, "/", WorldSize(), " (tp ", TpRank(), "/", tp, ", ep ",
                      EpRank(), "/", ep, ")");
}

int64_t ParallelConfig::VocabRowsPerRank(int64_t vocab) const {
  const int w = WorldSize();
  return (vocab + w - 1) / w;
}

IndexRange ParallelConfig::VocabRows(int64_t vocab) const {
  const int64_t per = VocabRowsPerRank(vocab);
  const int64_t begin = std::min<int64_t>(vocab, per * rank);
  return {begin, std::min<int64_t>(vocab, begin + per) - begin};
}

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
