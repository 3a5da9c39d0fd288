// Which worker group serves a request: a pure function of the groups' last load reports, so it
// is tested with fake reports and simulated without a cluster.
//
// kPrefixAffinity (the default): among healthy groups that are not overloaded, the one whose
// reported prefix cache holds the longest run of the prompt's leading KV blocks wins (block
// hashes from model/plan/kv_block_hash.h, the same values the workers report); with no cached
// prefix anywhere, the least loaded group wins. kLeastLoaded ignores prefixes; kRoundRobin
// ignores load (a baseline for benchmarks).
#ifndef EXPERTMESH_ROUTER_ROUTING_POLICY_H_
#define EXPERTMESH_ROUTER_ROUTING_POLICY_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace expertmesh::router {

enum class RoutingMode { kPrefixAffinity, kLeastLoaded, kRoundRobin };

// "prefix", "least-loaded", "round-robin". INVALID_ARGUMENT otherwise.
absl::StatusOr<RoutingMode> ParseRoutingMode(absl::string_view name);

// What the router knows about one group when it routes.
struct GroupView {
  bool healthy = false;
  // From the last LoadReport.
  uint32_t queued = 0;
  uint32_t running = 0;
  uint32_t free_kv_blocks = 0;
  uint32_t total_kv_blocks = 0;
  uint32_t kv_block_size = 0;
  const absl::flat_hash_set<uint64_t>* cached_prefixes = nullptr;  // may be null
  // Requests this router has in flight on the group (fresher than the report).
  uint32_t router_inflight = 0;
};

struct RoutingOptions {
  RoutingMode mode = RoutingMode::kPrefixAffinity;
  // A group is overloaded when its queue (reported queued or router in-flight beyond running,
  // whichever is larger) reaches this, or its free KV fraction drops below min_free_kv.
  uint32_t max_group_queue = 64;
  double min_free_kv = 0.02;
  // Prefix affinity gives way to load when the cached group's load exceeds the least loaded
  // group's by more than this many requests.
  double affinity_slack = 8;
};

// Load score: waiting requests plus KV pressure (a full pool counts like 4 waiting requests).
double LoadScore(const GroupView& group);
bool Overloaded(const GroupView& group, const RoutingOptions& options);

// Number of leading blocks of `block_hashes` (chained, so a hit on block i implies blocks
// 0..i) found in `cached`.
size_t MatchedPrefixBlocks(std::span<const uint64_t> block_hashes,
                           const absl::flat_hash_set<uint64_t>& cached);

struct RoutingDecision {
  size_t group = 0;
  size_t matched_blocks = 0;
};

// Picks a group for a prompt. `hashes_for_block_size(b)` returns the prompt's chained full-block
// hashes for block size b (computed lazily, once per distinct size). `excluded[i]` skips group
// i (groups already tried). `rr_counter` is advanced for round robin and tie-breaking.
// UNAVAILABLE when no healthy group is left; RESOURCE_EXHAUSTED when all are overloaded.
template <typename HashFn>
absl::StatusOr<RoutingDecision> ChooseGroup(std::span<const GroupView> groups,
                                            std::span<const bool> excluded,
                                            HashFn&& hashes_for_block_size,
                                            const RoutingOptions& options, uint64_t rr_counter);

}  // namespace expertmesh::router

#include "router/routing_policy_impl.h"  // IWYU pragma: export

#endif  // EXPERTMESH_ROUTER_ROUTING_POLICY_H_
