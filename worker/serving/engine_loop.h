// EngineLoop: the leader's one engine thread. It owns a StepEngine, takes new requests, aborts
// and cancellations from a thread-safe queue, runs Step() back to back while there is work
// (sleeping on a condition variable when there is none), and delivers each request's tokens to
// its RequestSink. gRPC threads never touch the engine; they read a load snapshot that the
// loop republishes after every step.
//
// In a group of several ranks the StepEngine on rank 0 is where each step's plan would be
// broadcast; this loop is the same for one rank or many.
//
// Thread safety: every public method may be called from any thread.
#ifndef EXPERTMESH_WORKER_SERVING_ENGINE_LOOP_H_
#define EXPERTMESH_WORKER_SERVING_ENGINE_LOOP_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "worker/scheduler/request.h"
#include "worker/serving/request_sink.h"
#include "worker/serving/step_engine.h"

namespace expertmesh::server {

struct EngineLoopOptions {
  // Requests accepted but not yet handed to the engine, plus those waiting inside it; beyond
  // this Submit() answers RESOURCE_EXHAUSTED (backpressure the router turns into a retry).
  int32_t max_queued = 1024;
  // Bound on LoadReport.cached_prefix_hashes.
  size_t max_prefix_hashes = 256;
  // How long the loop sleeps without work before it calls StepEngine::Idle().
  absl::Duration idle_tick = absl::Seconds(2);
  // Called (on the engine thread) when Step() or Idle() fails, after the live requests got the
  // error. A worker group of several ranks cannot recover from that (its ranks no longer run
  // the same steps), so its worker exits; a single rank keeps serving when this is unset.
  std::function<void(const absl::Status&)> on_fatal;
};

struct LoadSnapshot {
  EngineLoad engine;
  int32_t queued = 0;  // submitted, not yet admitted (loop queue + engine waiting)
  int64_t steps = 0;   // steps run so far
};

class EngineLoop {
 public:
  EngineLoop(std::unique_ptr<StepEngine> engine, EngineLoopOptions options);
  // Stops the thread (Stop()).
  ~EngineLoop();

  // Starts the engine thread. REQUIRES: called once.
  void Start();

  const EngineInfo& info() const { return info_; }

  // Queues `request`; its results (or its rejection by the engine: INVALID_ARGUMENT,
  // ALREADY_EXISTS) go to `sink`. Returns UNAVAILABLE when draining or stopped and
  // RESOURCE_EXHAUSTED when the queue is full; then `sink` is never called.
  absl::Status Submit(scheduler::GenerationRequest request, std::shared_ptr<RequestSink> sink);

  // The client of `sink` went away (cancel, deadline): abort its request and free its blocks.
  // `sink` receives nothing more. No-op when the request already ended.
  void Cancel(const std::string& id, const RequestSink* sink);

  // Aborts a request by id; `done(aborted)` runs on the engine thread once it is processed
  // (false when the id was not live). The request's sink gets a last event with kAborted.
  void Abort(const std::string& id, std::function<void(bool aborted)> done);

  LoadSnapshot Load() const;
  // Requests accepted and not yet ended.
  int32_t NumLive() const;

  // From now on Submit() answers UNAVAILABLE; live requests go on.
  void StopAccepting();

  // Stops accepting (Submit -> UNAVAILABLE), waits until every live request ended or
  // `deadline` passed, then ends the rest with UNAVAILABLE "worker shutting down". Returns
  // the number of requests that had to be cut off.
  int32_t Drain(absl::Time deadline);

  // Ends all live requests with UNAVAILABLE and joins the thread. Idempotent.
  void Stop();

 private:
  struct Pending {
    enum Kind { kSubmit, kCancel, kAbort } kind;
    scheduler::GenerationRequest request;  // kSubmit
    std::string id;                        // kCancel, kAbort
    std::shared_ptr<RequestSink> sink;     // kSubmit
    const RequestSink* cancel_sink = nullptr;
    std::function<void(bool)> done;  // kAbort
  };

  void Run();
  void Apply(Pending& pending);
  void RunStep();
  void FailAll(const absl::Status& status);
  // Republishes the load; `applied_submits` queue entries are now inside the engine.
  void Publish(int32_t applied_submits);
  void EndRequest(const std::string& id, StreamEvent event);

  const std::unique_ptr<StepEngine> engine_;  // engine thread only
  const EngineLoopOptions options_;
  const EngineInfo info_;

  // Engine thread only: live requests and their sinks.
  absl::flat_hash_map<std::string, std::shared_ptr<RequestSink>> sinks_;
  int64_t steps_ = 0;

  mutable absl::Mutex mu_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  int32_t queued_submits_ ABSL_GUARDED_BY(mu_) = 0;  // submits not yet in the snapshot
  int32_t live_ ABSL_GUARDED_BY(mu_) = 0;            // accepted, not yet ended
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool cut_off_ ABSL_GUARDED_BY(mu_) = false;  // Drain's deadline passed: fail everything
  LoadSnapshot snapshot_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace expertmesh::server

#endif  // EXPERTMESH_WORKER_SERVING_ENGINE_LOOP_H_
