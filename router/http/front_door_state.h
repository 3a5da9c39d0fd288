// What every connection of a FrontDoor shares (internal to router/http).
#ifndef EXPERTMESH_ROUTER_HTTP_FRONT_DOOR_STATE_H_
#define EXPERTMESH_ROUTER_HTTP_FRONT_DOOR_STATE_H_

#include <memory>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "common/bounded_executor.h"
#include "router/http/connection_limiter.h"
#include "router/http/front_door.h"
#include "router/http/response_channel.h"

namespace expertmesh::router::http {

struct FrontDoorState {
  FrontDoorState(const FrontDoorOptions& o, const std::vector<Route>& r, const FrontDoorHooks& h)
      : options(o),
        routes(r),
        hooks(h),
        limiter(o.limits.max_connections, o.limits.max_connections_per_client),
        body_budget(o.limits.max_inflight_body_bytes),
        executor(std::make_unique<BoundedExecutor>(o.handler_threads, o.max_queued_handlers)) {}

  // The route for (method, path): nullptr and *path_known when only the method differs.
  const Route* Match(std::string_view method, std::string_view path, bool* path_known) const {
    *path_known = false;
    for (const Route& r : routes) {
      const bool prefix = !r.path.empty() && r.path.back() == '*';
      const std::string_view want =
          prefix ? std::string_view(r.path).substr(0, r.path.size() - 1) : std::string_view(r.path);
      const bool hit =
          prefix ? path.substr(0, want.size()) == want && path.size() > want.size() : path == want;
      if (!hit) continue;
      *path_known = true;
      if (r.method == method) return &r;
    }
    return nullptr;
  }

  // Open responses, so Stop can end them. Nothing here may outlive the io_context that
  // the channels' wake-ups post to: see EndAll.
  void Track(const std::shared_ptr<ResponseChannel>& channel) {
    absl::MutexLock lock(&mu);
    live.emplace(channel.get(), channel);
  }
  void Untrack(const ResponseChannel* channel) {
    absl::MutexLock lock(&mu);
    live.erase(channel);
  }
  // Ends every open response and forgets it. Stop calls this once the I/O threads are gone:
  // a connection stopped mid-response never resumes to Untrack, and its channel holds the
  // connection's wake-up (a strand executor and a timer of the io_context). Kept here, it
  // would be destroyed with this state, after the io_context: a use after free of Asio's
  // services that locked a freed pthread mutex (glibc's tpp.c assertion in router_e2e_test).
  // Forgotten here, the last owner is the connection's coroutine frame, which the io_context
  // destroys while its services still exist.
  void EndAll() {
    absl::flat_hash_map<const ResponseChannel*, std::shared_ptr<ResponseChannel>> open;
    {
      absl::MutexLock lock(&mu);
      open.swap(live);
    }
    for (const auto& [ptr, channel] : open) channel->MarkGone();
  }

  const FrontDoorOptions& options;
  const std::vector<Route>& routes;
  const FrontDoorHooks& hooks;
  ConnectionLimiter limiter;
  ByteBudget body_budget;
  std::unique_ptr<BoundedExecutor> executor;

  absl::Mutex mu;
  absl::flat_hash_map<const ResponseChannel*, std::shared_ptr<ResponseChannel>> live
      ABSL_GUARDED_BY(mu);
};

}  // namespace expertmesh::router::http

#endif  // EXPERTMESH_ROUTER_HTTP_FRONT_DOOR_STATE_H_
