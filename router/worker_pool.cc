#include "router/worker_pool.h"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "model/plan/kv_block_hash.h"

namespace expertmesh::router {

absl::StatusOr<std::vector<std::string>> ResolveTarget(const std::string& target) {
  constexpr absl::string_view kDns = "dns:///";
  if (!absl::StartsWith(target, kDns)) {
    if (target.empty() || target.find(':') == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("worker target '", target, "' is not host:port or dns:///host:port"));
    }
    return std::vector<std::string>{target};
  }
  const std::string rest = target.substr(kDns.size());
  const size_t colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == rest.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker target '", target, "' needs a port: dns:///host:port"));
  }
  const std::string host = rest.substr(0, colon);
  const std::string port = rest.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &result); rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve worker name ", host, ": ", gai_strerror(rc)));
  }
  std::vector<std::string> addresses;
  for (addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    char buf[NI_MAXHOST];
    if (getnameinfo(ai->ai_addr, ai->ai_addrlen, buf, sizeof(buf), nullptr, 0, NI_NUMERICHOST) !=
        0) {
      continue;
    }
    std::string address = ai->ai_family == AF_INET6 ? absl::StrCat("[", buf, "]:", port)
                                                    : absl::StrCat(buf, ":", port);
    if (std::find(addresses.begin(), addresses.end(), address) == addresses.end()) {
      addresses.push_back(std::move(address));
    }
  }
  freeaddrinfo(result);
  return addresses;
}

WorkerPool::WorkerPool(WorkerPoolOptions options) : options_(std::move(options)) {}

WorkerPool::~WorkerPool() { Stop(); }

absl::Status WorkerPool::Start() {
  for (const std::string& target : options_.targets) {
    absl::StatusOr<std::vector<std::string>> resolved = ResolveTarget(target);
    if (absl::IsInvalidArgument(resolved.status())) return resolved.status();
  }
  PollOnce();
  poller_ = std::thread([this] { PollLoop(); });
  return absl::OkStatus();
}

void WorkerPool::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (poller_.joinable()) poller_.join();
}

void WorkerPool::PollLoop() {
  while (!stop_.WaitForNotificationWithTimeout(options_.poll_interval)) PollOnce();
}

void WorkerPool::Rediscover() {
  std::vector<std::string> wanted;
  for (const std::string& target : options_.targets) {
    absl::StatusOr<std::vector<std::string>> resolved = ResolveTarget(target);
    std::vector<std::string> addresses;
    {
      absl::MutexLock lock(&mu_);
      if (resolved.ok()) {
        last_resolved_[target] = *resolved;
      } else {
        // Keep the previous answer rather than dropping groups on a DNS blip.
        EM_LOG_WARN("router: {}", resolved.status().ToString());
      }
      addresses = last_resolved_[target];
    }
    for (std::string& a : addresses) {
      if (std::find(wanted.begin(), wanted.end(), a) == wanted.end()) wanted.push_back(a);
    }
  }
  absl::MutexLock lock(&mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<WorkerGroup>> existing;
  for (auto& g : groups_) existing[g->address()] = g;
  std::vector<std::shared_ptr<WorkerGroup>> next;
  for (const std::string& a : wanted) {
    auto it = existing.find(a);
    if (it != existing.end()) {
      next.push_back(it->second);
    } else {
      EM_LOG_INFO("router: worker group {} discovered", a);
      next.push_back(std::make_shared<WorkerGroup>(a, options_.connect));
    }
  }
  groups_ = std::move(next);
}

void WorkerPool::PollOnce() {
  Rediscover();
  std::vector<std::shared_ptr<WorkerGroup>> groups = Groups();
  // Probe in parallel so one hung group does not delay the others' state. Each group logs its
  // own transitions (with the reason), including those a failed stream causes.
  std::vector<std::thread> probes;
  for (auto& g : groups) {
    probes.emplace_back([this, g] { g->Probe(options_.probe_timeout); });
  }
  for (auto& t : probes) t.join();
}

std::vector<std::shared_ptr<WorkerGroup>> WorkerPool::Groups() const {
  absl::MutexLock lock(&mu_);
  return groups_;
}

size_t WorkerPool::HealthyCount() const {
  size_t n = 0;
  for (auto& g : Groups()) n += g->State().healthy ? 1 : 0;
  return n;
}

absl::StatusOr<std::shared_ptr<WorkerGroup>> WorkerPool::Pick(
    std::span<const int32_t> prompt, const std::vector<std::shared_ptr<WorkerGroup>>& tried,
    std::string_view cache_salt) {
  std::vector<std::shared_ptr<WorkerGroup>> groups = Groups();
  std::vector<GroupState> states;
  std::vector<GroupView> views;
  std::unique_ptr<bool[]> excluded(new bool[groups.size()]);
  states.reserve(groups.size());
  for (size_t i = 0; i < groups.size(); ++i) {
    states.push_back(groups[i]->State());
    excluded[i] = std::find(tried.begin(), tried.end(), groups[i]) != tried.end();
  }
  for (const GroupState& s : states) {
    GroupView v;
    v.healthy = s.healthy;
    v.queued = s.load.queued_requests();
    v.running = s.load.running_requests();
    v.free_kv_blocks = s.load.free_kv_blocks();
    v.total_kv_blocks = s.load.total_kv_blocks();
    v.kv_block_size = s.load.kv_block_size();
    v.cached_prefixes = s.cached_prefixes.get();
    v.router_inflight = s.router_inflight;
    views.push_back(v);
  }
  absl::flat_hash_map<uint32_t, std::vector<uint64_t>> hashes;
  const uint64_t root = model::KvRootHash(cache_salt);
  auto hash_fn = [&](uint32_t block_size) -> std::span<const uint64_t> {
    auto [it, inserted] = hashes.try_emplace(block_size);
    if (inserted) {
      it->second = model::HashFullKvBlocks(prompt, static_cast<int>(block_size), SIZE_MAX, root);
    }
    return it->second;
  };
  absl::StatusOr<RoutingDecision> decision =
      ChooseGroup(views, std::span<const bool>(excluded.get(), groups.size()), hash_fn,
                  options_.routing, rr_counter_.fetch_add(1, std::memory_order_relaxed));
  if (!decision.ok()) return decision.status();
  return groups[decision->group];
}

}  // namespace expertmesh::router
