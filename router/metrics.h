// Prometheus metrics of the router, rendered in the text exposition format (version 0.0.4):
// request counts by API and status, time to first token and inter-token latency histograms,
// tokens in and out, and per worker group health, queue depth and KV usage.
//
// Thread safety: all methods may be called from any thread.
#ifndef EXPERTMESH_ROUTER_METRICS_H_
#define EXPERTMESH_ROUTER_METRICS_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/synchronization/mutex.h"
#include "router/worker_group.h"

namespace expertmesh::router {

// Cumulative histogram with fixed upper bounds (seconds).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);
  // Appends "# HELP/# TYPE" and the _bucket/_sum/_count lines for `name`.
  void Render(absl::string_view name, absl::string_view help, std::string* out) const;
  uint64_t count() const;

 private:
  const std::vector<double> bounds_;
  mutable absl::Mutex mu_;
  std::vector<uint64_t> counts_ ABSL_GUARDED_BY(mu_);  // per bucket, last is +Inf
  double sum_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t count_ ABSL_GUARDED_BY(mu_) = 0;
};

class RouterMetrics {
 public:
  RouterMetrics();

  // `api` is "http" or "grpc"; `endpoint` e.g. "/v1/completions" or "Generate"; `status` the
  // HTTP status code or gRPC status code name.
  void CountRequest(absl::string_view api, absl::string_view endpoint, absl::string_view status);
  void AddPromptTokens(uint64_t n) { prompt_tokens_.fetch_add(n, std::memory_order_relaxed); }
  void AddCompletionTokens(uint64_t n) {
    completion_tokens_.fetch_add(n, std::memory_order_relaxed);
  }
  void CountRetry() { retries_.fetch_add(1, std::memory_order_relaxed); }
  void CountWorkerFailure() { worker_failures_.fetch_add(1, std::memory_order_relaxed); }

  Histogram& ttft() { return ttft_; }
  Histogram& inter_token() { return inter_token_; }
  Histogram& request_latency() { return request_latency_; }

  // The whole exposition, with gauges for the given groups and admission state.
  std::string Render(const std::vector<std::shared_ptr<WorkerGroup>>& groups, int active,
                     int queued) const;

  // Value of a request counter (tests).
  uint64_t RequestCount(absl::string_view api, absl::string_view endpoint,
                        absl::string_view status) const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, uint64_t> requests_ ABSL_GUARDED_BY(mu_);  // label set -> count
  std::atomic<uint64_t> prompt_tokens_{0};
  std::atomic<uint64_t> completion_tokens_{0};
  std::atomic<uint64_t> retries_{0};
  std::atomic<uint64_t> worker_failures_{0};
  Histogram ttft_;
  Histogram inter_token_;
  Histogram request_latency_;
};

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_METRICS_H_
