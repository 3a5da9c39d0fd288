#include "worker/service/worker_service.h"

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "common/grpc_token.h"
#include "model/request/request_id.h"
#include "worker/service/proto_convert.h"

namespace expertmesh::server {
namespace {

using internal_api::SubmitResponse;

grpc::Status ToGrpc(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

// Adds `next` to a queued message that has not been written yet (the client is slower than
// the engine): one message then carries several tokens.
void Coalesce(SubmitResponse& queued, SubmitResponse next) {
  for (auto& token : *next.mutable_tokens()) *queued.add_tokens() = std::move(token);
  // A request's first event carries these and is never queued behind another today; moving
  // them anyway keeps Coalesce lossless whatever the order of events.
  for (auto& scored : *next.mutable_prompt_logprobs()) {
    *queued.add_prompt_logprobs() = std::move(scored);
  }
  if (next.cached_prompt_tokens() != 0)
    queued.set_cached_prompt_tokens(next.cached_prompt_tokens());
  if (next.stop_reason() != internal_api::STOP_REASON_UNSPECIFIED) {
    queued.set_stop_reason(next.stop_reason());
  }
}

// The stream's state, shared by the engine loop (Deliver) and the gRPC reactor (write
// completions, cancel). Every reactor operation happens under mu_, so the loop never touches
// a reactor that OnDone has released.
class StreamSink final : public RequestSink {
 public:
  explicit StreamSink(grpc::ServerWriteReactor<SubmitResponse>* reactor) : reactor_(reactor) {}

  void Deliver(StreamEvent event) override {
    absl::MutexLock lock(&mu_);
    if (reactor_ == nullptr || final_.has_value() || finishing_) return;
    if (!event.tokens.empty() || event.end != StreamEnd::kNone ||
        event.cached_prompt_tokens.has_value()) {
      SubmitResponse response = ToProto(event);
      if (!pending_.empty()) {
        Coalesce(pending_.back(), std::move(response));
      } else {
        pending_.push_back(std::move(response));
      }
    }
    if (!event.error.ok()) {
      final_ = ToGrpc(event.error);
    } else if (event.end != StreamEnd::kNone) {
      final_ = grpc::Status::OK;
    }
    PumpLocked();
  }

  void OnWriteDone(bool ok) {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) cancelled_ = true;
    PumpLocked();
  }

  void OnCancel() {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    PumpLocked();
  }

  void Detach() {
    absl::MutexLock lock(&mu_);
    reactor_ = nullptr;
  }

 private:
  // Starts the next write, or finishes the call once everything queued is written.
  void PumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (reactor_ == nullptr || writing_ || finishing_) return;
    if (cancelled_) {
      finishing_ = true;
      reactor_->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "request cancelled"));
      return;
    }
    if (!pending_.empty()) {
      current_ = std::move(pending_.front());
      pending_.pop_front();
      writing_ = true;
      reactor_->StartWrite(&current_);
      return;
    }
    if (final_.has_value()) {
      finishing_ = true;
      reactor_->Finish(*final_);
    }
  }

  absl::Mutex mu_;
  grpc::ServerWriteReactor<SubmitResponse>* reactor_ ABSL_GUARDED_BY(mu_) ABSL_PT_GUARDED_BY(mu_);
  std::deque<SubmitResponse> pending_ ABSL_GUARDED_BY(mu_);
  SubmitResponse current_ ABSL_GUARDED_BY(mu_);  // the message being written
  std::optional<grpc::Status> final_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

class SubmitStream final : public grpc::ServerWriteReactor<SubmitResponse> {
 public:
  SubmitStream(EngineLoop* loop, const internal_api::SubmitRequest& request,
               std::shared_ptr<const grammar::CompiledGrammar> grammar)
      : loop_(loop), id_(request.request_id()), sink_(std::make_shared<StreamSink>(this)) {
    scheduler::GenerationRequest r = FromProto(request);
    r.grammar = std::move(grammar);
    absl::Status status = loop_->Submit(std::move(r), sink_);
    if (!status.ok()) sink_->Deliver(StreamEvent{.error = status});
  }

  void OnWriteDone(bool ok) override {
    if (!ok) loop_->Cancel(id_, sink_.get());
    sink_->OnWriteDone(ok);
  }

  void OnCancel() override {
    loop_->Cancel(id_, sink_.get());
    sink_->OnCancel();
  }

  void OnDone() override {
    sink_->Detach();
    delete this;
  }

 private:
  EngineLoop* const loop_;
  const std::string id_;
  const std::shared_ptr<StreamSink> sink_;
};

// A Submit refused before it reaches the engine: finishes at once, writes nothing.
class RefusedStream final : public grpc::ServerWriteReactor<SubmitResponse> {
 public:
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerWriteReactor<SubmitResponse>* WorkerService::Submit(
    grpc::CallbackServerContext* context, const internal_api::SubmitRequest* request) {
  if (grpc::Status auth = CheckCallToken(options_.token, *context, "Worker.Submit"); !auth.ok()) {
    grpc::ServerWriteReactor<SubmitResponse>* refused = new RefusedStream();
    refused->Finish(auth);
    return refused;
  }
  // Only ids a router minted (model/request/request_id.h) may key a live request, so no id a
  // client chose can collide with, or later abort, another client's request.
  if (!request->request_id().empty() && !model::IsRouterRequestId(request->request_id())) {
    grpc::ServerWriteReactor<SubmitResponse>* refused = new RefusedStream();
    refused->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 "Submit: the request id was not made by a router"));
    return refused;
  }
  std::shared_ptr<const grammar::CompiledGrammar> grammar;
  if (!request->grammar().empty()) {
    absl::StatusOr<std::shared_ptr<const grammar::CompiledGrammar>> compiled =
        options_.grammars != nullptr
            ? options_.grammars->Compile(request->grammar())
            : absl::InvalidArgumentError("grammar: this worker does not decode with grammars");
    if (!compiled.ok()) {
      grpc::ServerWriteReactor<SubmitResponse>* refused = new RefusedStream();
      refused->Finish(ToGrpc(compiled.status()));
      return refused;
    }
    grammar = *std::move(compiled);
  }
  return new SubmitStream(loop_, *request, std::move(grammar));
}

grpc::ServerUnaryReactor* WorkerService::Abort(grpc::CallbackServerContext* context,
                                               const internal_api::AbortRequest* request,
                                               internal_api::AbortResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (grpc::Status auth = CheckCallToken(options_.token, *context, "Worker.Abort"); !auth.ok()) {
    reactor->Finish(auth);
    return reactor;
  }
  if (request->request_id().empty()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "Abort: empty request_id"));
    return reactor;
  }
  if (!model::IsRouterRequestId(request->request_id())) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 "Abort: the request id was not made by a router"));
    return reactor;
  }
  loop_->Abort(request->request_id(), [reactor, response](bool aborted) {
    response->set_aborted(aborted);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* WorkerService::GetLoad(grpc::CallbackServerContext* context,
                                                 const internal_api::GetLoadRequest* /*request*/,
                                                 internal_api::LoadReport* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // The report names cached prefix hashes and load: nothing for a caller without the token.
  if (grpc::Status auth = CheckCallToken(options_.token, *context, "Worker.GetLoad"); !auth.ok()) {
    reactor->Finish(auth);
    return reactor;
  }
  *response = ToLoadReport(loop_->Load(), loop_->info(), options_.tp, options_.ep);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace expertmesh::server
