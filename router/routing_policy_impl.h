// Template body of ChooseGroup (routing_policy.h). Not for direct inclusion.
#ifndef EXPERTMESH_ROUTER_ROUTING_POLICY_IMPL_H_
#define EXPERTMESH_ROUTER_ROUTING_POLICY_IMPL_H_

#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace expertmesh::router {

template <typename HashFn>
absl::StatusOr<RoutingDecision> ChooseGroup(std::span<const GroupView> groups,
                                            std::span<const bool> excluded,
                                            HashFn&& hashes_for_block_size,
                                            const RoutingOptions& options, uint64_t rr_counter) {
  std::vector<size_t> candidates;  // healthy, not excluded
  std::vector<size_t> open;        // ... and not overloaded
  for (size_t i = 0; i < groups.size(); ++i) {
    if (!groups[i].healthy || (i < excluded.size() && excluded[i])) continue;
    candidates.push_back(i);
    if (!Overloaded(groups[i], options)) open.push_back(i);
  }
  if (candidates.empty()) {
    return absl::UnavailableError(
        absl::StrCat("no healthy worker group (", groups.size(), " known)"));
  }
  if (open.empty()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "all ", candidates.size(), " healthy worker groups are at capacity; retry later"));
  }
  const size_t n = open.size();
  if (options.mode == RoutingMode::kRoundRobin) {
    return RoutingDecision{open[rr_counter % n], 0};
  }
  // Least loaded, ties broken by rotating from rr_counter so equal groups share the work.
  size_t least = open[rr_counter % n];
  double least_score = LoadScore(groups[least]);
  for (size_t k = 1; k < n; ++k) {
    const size_t i = open[(rr_counter + k) % n];
    const double score = LoadScore(groups[i]);
    if (score < least_score) {
      least = i;
      least_score = score;
    }
  }
  RoutingDecision decision{least, 0};
  if (options.mode != RoutingMode::kPrefixAffinity) return decision;
  double best_score = std::numeric_limits<double>::infinity();
  for (size_t k = 0; k < n; ++k) {
    const size_t i = open[(rr_counter + k) % n];
    const GroupView& g = groups[i];
    if (g.cached_prefixes == nullptr || g.cached_prefixes->empty() || g.kv_block_size == 0) {
      continue;
    }
    const size_t matched =
        MatchedPrefixBlocks(hashes_for_block_size(g.kv_block_size), *g.cached_prefixes);
    const double score = LoadScore(g);
    if (matched == 0 || score > least_score + options.affinity_slack) continue;
    const size_t matched_tokens = matched * g.kv_block_size;
    const size_t best_tokens = decision.matched_blocks *
                               (decision.matched_blocks ? groups[decision.group].kv_block_size : 0);
    if (matched_tokens > best_tokens || (matched_tokens == best_tokens && score < best_score)) {
      decision = RoutingDecision{i, matched};
      best_score = score;
    }
  }
  return decision;
}

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_ROUTING_POLICY_IMPL_H_
