// The router's request pipeline behind both public APIs: validation and tokenization,
// admission (backpressure), fan-out of the n choices to the Generator, and the bookkeeping
// graceful shutdown needs (draining refuses new work, in-flight requests are awaited and
// finally cancelled).
//
// Thread safety: all methods may be called from any thread.
#ifndef EXPERTMESH_ROUTER_ROUTER_CORE_H_
#define EXPERTMESH_ROUTER_ROUTER_CORE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "router/admission.h"
#include "router/generator.h"
#include "router/metrics.h"
#include "router/model_context.h"
#include "router/request_validation.h"
#include "router/structured_output.h"
#include "router/worker_pool.h"

namespace expertmesh::router {

struct RouterCoreOptions {
  RouterLimits limits;
  int max_active = 256;  // concurrent generations
  int max_queued = 256;  // requests waiting for a slot
  // Seconds clients are told to wait (Retry-After) when refused for load.
  int retry_after_seconds = 1;
  GeneratorOptions generator;
};

class RouterCore {
 public:
  RouterCore(std::unique_ptr<ModelContext> model, WorkerPool* pool, RouterCoreOptions options);

  // Validates and tokenizes, and compiles an output constraint or a required tool call to the
  // grammar the worker enforces. `model_name` empty selects the served model; NOT_FOUND for
  // another name. Errors as ValidateParams / BuildPrompt / ResolveMaxTokens /
  // StructuredOutputCompiler::GrammarText.
  absl::StatusOr<PreparedRequest> Prepare(const std::string& model_name, const PromptInput& input,
                                          const GenerationParams& params, std::string request_id,
                                          absl::Time deadline) const;

  using DeltaFn = std::function<bool(uint32_t index, const ChoiceDelta& delta)>;

  // Runs all n choices of `request` (in parallel, choice 0 on the calling thread). `on_delta`
  // is called under an internal lock (never concurrently); returning false cancels. Returns
  // the n results, or the first error of a choice that failed before producing output (the
  // other choices are then cancelled). Also RESOURCE_EXHAUSTED from admission and
  // UNAVAILABLE while draining.
  // `tickets`, when given and not empty, are n admission slots the caller took already
  // (streaming APIs admit before sending headers so they can still answer 429).
  absl::StatusOr<std::vector<ChoiceResult>> Generate(
      const PreparedRequest& request, CancelToken* cancel, const DeltaFn& on_delta,
      std::vector<Admission::Ticket>* tickets = nullptr);

  // A fresh internal request id (router/request_ids.h): the workers' key for the request.
  // Never show it to a client and never take one from a client.
  std::string NewRequestId() const;
  // A fresh id to show the client (response "id", X-Request-Id), unrelated to the internal one.
  std::string NewPublicId() const;

  // Shutdown, step 1: refuse new requests (readiness false).
  void StartDraining() { draining_.store(true); }
  bool draining() const { return draining_.load(); }
  // Step 2: waits until no request is in flight or `grace` passes, then cancels those left
  // and waits for them to end. Returns the number cancelled.
  int Drain(absl::Duration grace);

  const ModelContext& model() const { return *model_; }
  WorkerPool& pool() { return *pool_; }
  RouterMetrics& metrics() { return metrics_; }
  Admission& admission() { return admission_; }
  const RouterCoreOptions& options() const { return options_; }
  const StructuredOutputCompiler& structured_output() const { return structured_; }
  bool Ready() const { return !draining_ && pool_->HealthyCount() > 0; }

 private:
  std::unique_ptr<ModelContext> model_;
  WorkerPool* pool_;
  RouterCoreOptions options_;
  RouterMetrics metrics_;
  Admission admission_;
  Generator generator_;
  StructuredOutputCompiler structured_;
  std::atomic<bool> draining_{false};

  mutable absl::Mutex mu_;
  absl::flat_hash_set<CancelToken*> inflight_ ABSL_GUARDED_BY(mu_);
};

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_ROUTER_CORE_H_
