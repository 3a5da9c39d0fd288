#include "worker/serving/engine_loop.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace expertmesh::server {
namespace {

StreamEnd EndFor(scheduler::FinishReason finish) {
  switch (finish) {
    case scheduler::FinishReason::kNone:
      return StreamEnd::kNone;
    case scheduler::FinishReason::kStop:
      return StreamEnd::kEos;
    case scheduler::FinishReason::kLength:
      return StreamEnd::kMaxTokens;
  }
  return StreamEnd::kNone;
}

}  // namespace

EngineLoop::EngineLoop(std::unique_ptr<StepEngine> engine, EngineLoopOptions options)
    : engine_(std::move(engine)), options_(options), info_(engine_->Info()) {
  snapshot_.engine = engine_->Load();
}

EngineLoop::~EngineLoop() { Stop(); }

void EngineLoop::Start() {
  thread_ = std::thread([this] { Run(); });
}

absl::Status EngineLoop::Submit(scheduler::GenerationRequest request,
                                std::shared_ptr<RequestSink> sink) {
  absl::MutexLock lock(&mu_);
  if (!accepting_) return absl::UnavailableError("worker is shutting down");
  const int32_t queued = queued_submits_ + snapshot_.engine.waiting;
  if (queued >= options_.max_queued) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "worker queue full: ", queued, " requests waiting (limit ", options_.max_queued, ")"));
  }
  Pending pending{.kind = Pending::kSubmit};
  pending.request = std::move(request);
  pending.sink = std::move(sink);
  queue_.push_back(std::move(pending));
  ++queued_submits_;
  ++live_;
  return absl::OkStatus();
}

void EngineLoop::Cancel(const std::string& id, const RequestSink* sink) {
  absl::MutexLock lock(&mu_);
  Pending pending{.kind = Pending::kCancel};
  pending.id = id;
  pending.cancel_sink = sink;
  queue_.push_back(std::move(pending));
}

void EngineLoop::Abort(const std::string& id, std::function<void(bool)> done) {
  absl::MutexLock lock(&mu_);
  if (stop_) {
    done(false);
    return;
  }
  Pending pending{.kind = Pending::kAbort};
  pending.id = id;
  pending.done = std::move(done);
  queue_.push_back(std::move(pending));
}

LoadSnapshot EngineLoop::Load() const {
  absl::MutexLock lock(&mu_);
  LoadSnapshot load = snapshot_;
  load.queued = queued_submits_ + snapshot_.engine.waiting;
  return load;
}

int32_t EngineLoop::NumLive() const {
  absl::MutexLock lock(&mu_);
  return live_;
}

void EngineLoop::StopAccepting() {
  absl::MutexLock lock(&mu_);
  accepting_ = false;
}

int32_t EngineLoop::Drain(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  accepting_ = false;
  auto none_live = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return live_ == 0; };
  if (mu_.AwaitWithDeadline(absl::Condition(&none_live), deadline)) return 0;
  const int32_t cut = live_;
  cut_off_ = true;
  // The loop fails them between two steps; a step is short, so this wait is bounded.
  if (thread_.joinable()) mu_.Await(absl::Condition(&none_live));
  return cut;
}

void EngineLoop::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    accepting_ = false;
  }
  if (thread_.joinable()) thread_.join();
}

void EngineLoop::Run() {
  while (true) {
    const bool idle = !engine_->HasWork();
    bool tick = false;
    std::deque<Pending> batch;
    bool stop = false;
    bool cut_off = false;
    {
      absl::MutexLock lock(&mu_);
      auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || cut_off_ || !queue_.empty();
      };
      if (idle && !mu_.AwaitWithTimeout(absl::Condition(&wake), options_.idle_tick)) {
        tick = true;
      }
      batch.swap(queue_);
      stop = stop_;
      cut_off = cut_off_;
      cut_off_ = false;  // one-shot: Drain waits for live_ to reach 0
    }
    int32_t applied_submits = 0;
    for (Pending& pending : batch) {
      if (pending.kind == Pending::kSubmit) ++applied_submits;
      Apply(pending);
    }
    if (stop || cut_off) {
      FailAll(absl::UnavailableError("worker shutting down"));
      Publish(applied_submits);
      if (stop) return;
      continue;
    }
    if (engine_->HasWork()) {
      RunStep();
    } else if (tick) {
      absl::Status status = engine_->Idle();
      if (!status.ok()) {
        EM_LOG_ERROR("engine idle tick failed: {}", status.ToString());
        if (options_.on_fatal) options_.on_fatal(status);
      }
    }
    Publish(applied_submits);
  }
}

void EngineLoop::Apply(Pending& pending) {
  switch (pending.kind) {
    case Pending::kSubmit: {
      std::string id = pending.request.id;
      absl::Status status = engine_->AddRequest(std::move(pending.request));
      if (status.ok() && sinks_.contains(id)) {
        // The engine forgot an id the loop still streams: never let two streams share it.
        engine_->Abort(id).IgnoreError();
        status = absl::AlreadyExistsError(absl::StrCat("request id ", id, " is already live"));
      }
      if (!status.ok()) {
        pending.sink->Deliver(StreamEvent{.error = status});
        absl::MutexLock lock(&mu_);
        --live_;
        return;
      }
      sinks_.emplace(std::move(id), std::move(pending.sink));
      return;
    }
    case Pending::kCancel: {
      auto it = sinks_.find(pending.id);
      if (it == sinks_.end() || it->second.get() != pending.cancel_sink) return;
      engine_->Abort(pending.id).IgnoreError();
      sinks_.erase(it);
      absl::MutexLock lock(&mu_);
      --live_;
      return;
    }
    case Pending::kAbort: {
      const bool live = sinks_.contains(pending.id);
      if (live) {
        engine_->Abort(pending.id).IgnoreError();
        EndRequest(pending.id, StreamEvent{.end = StreamEnd::kAborted});
      }
      pending.done(live);
      return;
    }
  }
}

void EngineLoop::RunStep() {
  absl::StatusOr<std::vector<StepOutput>> outputs = engine_->Step();
  ++steps_;
  if (!outputs.ok()) {
    EM_LOG_ERROR("engine step {} failed: {}; aborting {} requests", steps_,
                 outputs.status().ToString(), sinks_.size());
    FailAll(absl::InternalError(absl::StrCat("engine step failed: ", outputs.status().message())));
    if (options_.on_fatal) options_.on_fatal(outputs.status());
    return;
  }
  for (StepOutput& output : *outputs) {
    auto it = sinks_.find(output.id);
    if (it == sinks_.end()) continue;  // cancelled while the step ran
    StreamEvent event{.tokens = std::move(output.tokens),
                      .cached_prompt_tokens = output.cached_prompt_tokens,
                      .prompt_logprobs = std::move(output.prompt_logprobs),
                      .end = EndFor(output.finish)};
    if (event.IsLast()) {
      EndRequest(output.id, std::move(event));
    } else {
      it->second->Deliver(std::move(event));
    }
  }
}

void EngineLoop::EndRequest(const std::string& id, StreamEvent event) {
  auto it = sinks_.find(id);
  if (it == sinks_.end()) return;
  std::shared_ptr<RequestSink> sink = std::move(it->second);
  sinks_.erase(it);
  sink->Deliver(std::move(event));
  absl::MutexLock lock(&mu_);
  --live_;
}

void EngineLoop::FailAll(const absl::Status& status) {
  if (sinks_.empty()) return;
  const int32_t n = static_cast<int32_t>(sinks_.size());
  for (auto& [id, sink] : sinks_) {
    engine_->Abort(id).IgnoreError();
    sink->Deliver(StreamEvent{.error = status});
  }
  sinks_.clear();
  absl::MutexLock lock(&mu_);
  live_ -= n;
}

void EngineLoop::Publish(int32_t applied_submits) {
  EngineLoad load = engine_->Load();
  if (load.cached_prefix_hashes.size() > options_.max_prefix_hashes) {
    load.cached_prefix_hashes.resize(options_.max_prefix_hashes);
  }
  absl::MutexLock lock(&mu_);
  snapshot_.engine = std::move(load);
  snapshot_.steps = steps_;
  // Counted as queued until the engine's own numbers include them.
  queued_submits_ -= applied_submits;
}

}  // namespace expertmesh::server
