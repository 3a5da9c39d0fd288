// A fake worker group leader for router tests: serves expertmesh.internal.v1.Worker and
// grpc.health.v1 over loopback with a deterministic token stream (the prompt's tokens echoed
// in a cycle, so the output text is predictable), a prefix cache of prompt block hashes, and
// injectable faults: fail before the first token, die after k tokens, slow tokens, unhealthy.
// Prompt logprobs come with the first token (FakePromptLogprob) and, as on a real worker, such
// a request reports no cached prompt tokens.
// It records what it saw (submits, client cancellations, Abort calls) and lets tests wait for
// those events without sleeping.
#ifndef EXPERTMESH_TESTS_ROUTER_FAKE_WORKER_H_
#define EXPERTMESH_TESTS_ROUTER_FAKE_WORKER_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "expertmesh/internal/v1/worker.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace expertmesh::router::testing {

namespace iv1 = ::expertmesh::internal::v1;

// What the fake worker reports for prompt token i >= 1 of a request with prompt_logprobs = k:
// logprob -0.125 i, rank 1 + i % 3, and alternatives j = 0..k-1 of token id j + 1 with logprob
// -0.5 j - 0.25.
iv1::PromptTokenLogprob FakePromptLogprob(const std::vector<int32_t>& prompt, size_t i, uint32_t k);

struct FakeWorkerOptions {
  uint32_t kv_block_size = 16;
  uint32_t total_kv_blocks = 1024;
  std::string model = "fake";
};

class FakeWorker final : public iv1::Worker::Service {
 public:
  // Listens on `address` ("127.0.0.1:0" picks a port).
  static absl::StatusOr<std::unique_ptr<FakeWorker>> Start(const std::string& address,
                                                           FakeWorkerOptions options = {});
  ~FakeWorker() override;

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // Stops serving: open streams end with an error (a "killed" group).
  void Shutdown();

  // Faults.
  void SetHealthy(bool healthy);
  void FailBeforeFirstToken(int count) { fail_before_first_.store(count); }
  void DieAfterTokens(int tokens) { die_after_.store(tokens); }  // -1: never
  void SetTokenDelay(absl::Duration d) { token_delay_ns_.store(absl::ToInt64Nanoseconds(d)); }
  void SetReportedQueue(uint32_t q) { reported_queue_.store(q); }

  // Observations.
  int submitted() const { return submitted_.load(); }
  int cancelled() const { return cancelled_.load(); }
  int aborts() const { return aborts_.load(); }
  int active() const;
  uint32_t free_kv_blocks() const;
  iv1::SubmitRequest last_request() const;
  // Blocks until `fn` holds for the counters or `timeout` passes; returns whether it held.
  bool WaitFor(const std::function<bool(const FakeWorker&)>& fn, absl::Duration timeout) const;

  grpc::Status Submit(grpc::ServerContext* context, const iv1::SubmitRequest* request,
                      grpc::ServerWriter<iv1::SubmitResponse>* writer) override;
  grpc::Status Abort(grpc::ServerContext* context, const iv1::AbortRequest* request,
                     iv1::AbortResponse* response) override;
  grpc::Status GetLoad(grpc::ServerContext* context, const iv1::GetLoadRequest* request,
                       iv1::LoadReport* response) override;

 private:
  explicit FakeWorker(FakeWorkerOptions options) : options_(std::move(options)) {}
  void Changed();

  FakeWorkerOptions options_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  absl::Notification stopping_;
  std::atomic<int> fail_before_first_{0};
  std::atomic<int> die_after_{-1};
  std::atomic<int64_t> token_delay_ns_{0};
  std::atomic<uint32_t> reported_queue_{0};
  std::atomic<int> submitted_{0};
  std::atomic<int> cancelled_{0};
  std::atomic<int> aborts_{0};

  mutable absl::Mutex mu_;
  uint32_t used_blocks_ ABSL_GUARDED_BY(mu_) = 0;
  int active_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 0;  // bumped on every observable change
  absl::flat_hash_set<uint64_t> cached_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> cached_order_ ABSL_GUARDED_BY(mu_);
  iv1::SubmitRequest last_ ABSL_GUARDED_BY(mu_);
};

}  // namespace expertmesh::router::testing

#endif  // EXPERTMESH_TESTS_ROUTER_FAKE_WORKER_H_
