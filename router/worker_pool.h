// The set of worker groups behind the router: discovery (a static address list, or
// dns:///host:port names re-resolved every poll, one group per resolved address), periodic
// health + load polling, and group choice through routing_policy.h.
//
// Thread safety: all methods may be called from any thread.
#ifndef EXPERTMESH_ROUTER_WORKER_POOL_H_
#define EXPERTMESH_ROUTER_WORKER_POOL_H_

#include <atomic>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "router/routing_policy.h"
#include "router/worker_group.h"

namespace expertmesh::router {

struct WorkerPoolOptions {
  // "host:port" addresses and/or "dns:///host:port" names.
  std::vector<std::string> targets;
  absl::Duration poll_interval = absl::Milliseconds(500);
  absl::Duration probe_timeout = absl::Seconds(1);
  RoutingOptions routing;
  // TLS and the internal token for the router -> worker channels (plaintext and no token by
  // default).
  WorkerConnectOptions connect;
};

// "host:port" strings that `target` stands for: itself, or for dns:///host:port every address
// host resolves to. UNAVAILABLE when resolution fails, INVALID_ARGUMENT for a malformed target.
absl::StatusOr<std::vector<std::string>> ResolveTarget(const std::string& target);

class WorkerPool {
 public:
  explicit WorkerPool(WorkerPoolOptions options);
  ~WorkerPool();

  // Resolves and probes every group once (so the first requests see real state), then polls
  // in the background. INVALID_ARGUMENT for a malformed target.
  absl::Status Start();
  void Stop();

  // One discovery + probe round, synchronously (tests use it instead of waiting).
  void PollOnce();

  // Picks a group for a prompt, skipping `tried`. Prefix affinity hashes the prompt under the
  // request's prefix-cache salt, as the workers cache it. Errors as ChooseGroup.
  absl::StatusOr<std::shared_ptr<WorkerGroup>> Pick(
      std::span<const int32_t> prompt, const std::vector<std::shared_ptr<WorkerGroup>>& tried,
      std::string_view cache_salt = {});

  std::vector<std::shared_ptr<WorkerGroup>> Groups() const;
  size_t HealthyCount() const;

 private:
  void Rediscover();
  void PollLoop();

  WorkerPoolOptions options_;
  std::atomic<uint64_t> rr_counter_{0};
  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<WorkerGroup>> groups_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::vector<std::string>> last_resolved_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread poller_;
};

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_WORKER_POOL_H_
