#include "router/routing_policy.h"

#include <algorithm>

namespace expertmesh::router {

absl::StatusOr<RoutingMode> ParseRoutingMode(absl::string_view name) {
  if (name == "prefix") return RoutingMode::kPrefixAffinity;
  if (name == "least-loaded") return RoutingMode::kLeastLoaded;
  if (name == "round-robin") return RoutingMode::kRoundRobin;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown routing policy '", name, "' (expected prefix, least-loaded or round-robin)"));
}

double LoadScore(const GroupView& g) {
  const double waiting = std::max<double>(g.queued + g.running, g.router_inflight);
  const double kv_used = g.total_kv_blocks == 0
                             ? 0.0
                             : 1.0 - static_cast<double>(g.free_kv_blocks) / g.total_kv_blocks;
  return waiting + 4.0 * kv_used;
}

bool Overloaded(const GroupView& g, const RoutingOptions& options) {
  const uint32_t beyond_running = g.router_inflight > g.running ? g.router_inflight - g.running : 0;
  if (std::max(g.queued, beyond_running) >= options.max_group_queue) return true;
  if (g.total_kv_blocks > 0 &&
      static_cast<double>(g.free_kv_blocks) / g.total_kv_blocks < options.min_free_kv) {
    return true;
  }
  return false;
}

size_t MatchedPrefixBlocks(std::span<const uint64_t> block_hashes,
                           const absl::flat_hash_set<uint64_t>& cached) {
  // Chained hashes: the deepest hit implies every block before it.
  for (size_t i = block_hashes.size(); i > 0; --i) {
    if (cached.contains(block_hashes[i - 1])) return i;
  }
  return 0;
}

}  // namespace expertmesh::router
