// Client side of one worker group: the internal gRPC `Worker` service on the group's leader
// (Submit stream, Abort, GetLoad) plus grpc.health.v1 Check, and the state the router keeps
// about it (health, last load report, requests in flight from this router).
//
// Thread safety: all methods may be called from any thread.
#ifndef EXPERTMESH_ROUTER_WORKER_GROUP_H_
#define EXPERTMESH_ROUTER_WORKER_GROUP_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/internal_token.h"
#include "expertmesh/internal/v1/worker.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace expertmesh::router {

namespace internal_api = ::expertmesh::internal::v1;

// A copy of what the router knows about a group, for routing and metrics. While the group is
// down, `load` is empty and `has_report` false: a dead group has no load to report.
struct GroupState {
  bool healthy = false;
  bool has_report = false;
  internal_api::LoadReport load;
  std::shared_ptr<const absl::flat_hash_set<uint64_t>> cached_prefixes;
  uint32_t router_inflight = 0;
  uint64_t failures = 0;
};

// How the router reaches worker groups and proves itself to them.
struct WorkerConnectOptions {
  // Plaintext when null; TLS trusting the workers' CA (GrpcChannelCredentials(--worker-ca)).
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // With TLS: the name the workers' certificates carry, when it is not the host of the
  // address dialled (dns:/// targets are dialled by resolved IP). Empty: that host.
  std::string tls_server_name;
  // Sent with every Worker call (Submit, Abort, GetLoad); the health check needs none.
  InternalToken token;
};

// Probes without an answer in a row that take a healthy group out.
inline constexpr int kMissedProbesToMarkDown = 2;

class WorkerGroup {
 public:
  WorkerGroup(std::string address, const WorkerConnectOptions& connect);

  const std::string& address() const { return address_; }

  // Streams `request` to the group; calls `on_message` for each response in order, and stops
  // early (cancelling the call, which aborts the request on the worker) when it returns false.
  // `context` lets another thread cancel (TryCancel) and carries the deadline. Returns the
  // call's final status as an absl::Status (OK also after an early stop by on_message).
  absl::Status Submit(const internal_api::SubmitRequest& request, grpc::ClientContext* context,
                      const std::function<bool(const internal_api::SubmitResponse&)>& on_message);

  // Aborts `request_id` on the worker. Idempotent; errors are the RPC's.
  absl::Status Abort(const std::string& request_id, absl::Duration timeout);

  // Polls GetLoad and grpc.health.v1 Check once and updates the state: healthy when Check
  // says SERVING and GetLoad answers. Returns the new health.
  bool Probe(absl::Duration timeout);

  // Marks the group down at once (a stream failed with `why`, a transport error); Probe brings
  // it back when it answers healthy again.
  void MarkFailed(const absl::Status& why);

  GroupState State() const;

  // Router-side in-flight accounting around Submit.
  void AddInflight(int delta) { inflight_.fetch_add(delta, std::memory_order_relaxed); }

 private:
  const std::string address_;
  const InternalToken token_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<internal_api::Worker::Stub> worker_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
  std::atomic<int> inflight_{0};

  // What the router last said about the group: every change is logged once, with its reason.
  enum class Reported { kUnknown, kUp, kDown };
  // Returns the line to log for the change (empty: no change). While down the group's load
  // report and cached prefixes are dropped, so /metrics and routing never use a dead group's
  // last numbers, and a restarted group (empty cache) starts from what it reports anew.
  std::string SetUpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string SetDownLocked(const std::string& reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  Reported reported_ ABSL_GUARDED_BY(mu_) = Reported::kUnknown;
  absl::Time down_since_ ABSL_GUARDED_BY(mu_);
  std::string down_reason_ ABSL_GUARDED_BY(mu_);
  bool healthy_ ABSL_GUARDED_BY(mu_) = false;
  bool has_report_ ABSL_GUARDED_BY(mu_) = false;
  internal_api::LoadReport load_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const absl::flat_hash_set<uint64_t>> cached_ ABSL_GUARDED_BY(mu_);
  uint64_t failures_ ABSL_GUARDED_BY(mu_) = 0;
  int missed_probes_ ABSL_GUARDED_BY(mu_) = 0;  // consecutive probes without an answer
};

// grpc::Status -> absl::Status with the same code and message.
absl::Status FromGrpc(const grpc::Status& status);

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_WORKER_GROUP_H_
