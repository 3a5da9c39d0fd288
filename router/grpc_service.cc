#include "router/grpc_service.h"

#include <algorithm>
#include <deque>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "router/chat_output_split.h"
#include "router/grpc_request.h"

namespace expertmesh::router {
namespace {

namespace pb = ::expertmesh::v1;

pb::FinishReason ToPublic(FinishReason r) {
  switch (r) {
    case FinishReason::kStop:
      return pb::FINISH_REASON_STOP;
    case FinishReason::kLength:
      return pb::FINISH_REASON_LENGTH;
    case FinishReason::kStopString:
      return pb::FINISH_REASON_STOP_STRING;
    case FinishReason::kAbort:
      return pb::FINISH_REASON_ABORT;
    case FinishReason::kError:
      return pb::FINISH_REASON_ERROR;
  }
  return pb::FINISH_REASON_UNSPECIFIED;
}

// One delta's parts into `msg`; calls are numbered on from *calls (OpenAI's index; ids as the
// HTTP API makes them, from the request's public id).
void SetParts(ChatOutputSplitter::Parts parts, uint32_t* calls, pb::GenerateResponse* msg) {
  msg->set_text(std::move(parts.content));
  msg->set_reasoning(std::move(parts.reasoning));
  for (ToolCall& c : parts.calls) {
    pb::ToolCall* out = msg->add_tool_calls();
    out->set_id(absl::StrCat("call_", msg->request_id(), "_0_", *calls));
    out->set_name(std::move(c.name));
    out->set_arguments(std::move(c.arguments));
    out->set_index((*calls)++);
  }
}

// Longest request_id a client may ask to have echoed.
constexpr size_t kMaxClientRequestIdBytes = 256;

class GenerateReactor final : public grpc::ServerWriteReactor<pb::GenerateResponse> {
 public:
  GenerateReactor(InferenceService* service, RouterCore* core, grpc::CallbackServerContext* ctx,
                  const pb::GenerateRequest& request, const absl::Status& auth)
      : core_(core) {
    Start(service, ctx, request, auth);
  }

  void OnWriteDone(bool ok) override;
  void OnCancel() override { cancel_.Cancel(); }
  void OnDone() override { delete this; }

 private:
  // What the producer needs from the call, copied off the gRPC thread's request.
  struct Job {
    std::string model;
    PromptInput input;
    GenerationParams params;
    std::string echo_id;     // the client's request_id, or a fresh public id
    std::string cache_salt;  // the tenant's prefix-cache salt
    absl::Time arrival;
    absl::Time deadline;
  };

  // On the gRPC thread: only cheap, bounded checks; tokenizing waits for admission. A Finish
  // called here (through Done) is held by gRPC until the reactor is bound to the call.
  void Start(InferenceService* service, grpc::CallbackServerContext* ctx,
             const pb::GenerateRequest& request, const absl::Status& auth) {
    const absl::Time arrival = absl::Now();
    const auto chrono_deadline = ctx->deadline();
    absl::Time deadline = absl::FromChrono(chrono_deadline);
    if (deadline > absl::Now() + absl::Hours(24 * 365)) deadline = absl::InfiniteFuture();
    if (!auth.ok()) return Done(auth);
    if (core_->draining()) return Done(absl::UnavailableError("the server is shutting down"));
    if (request.request_id().size() > kMaxClientRequestIdBytes) {
      return Done(absl::InvalidArgumentError(
          absl::StrCat("request_id is longer than ", kMaxClientRequestIdBytes, " bytes")));
    }
    auto job = std::make_shared<Job>();
    if (absl::Status s = FromPublicRequest(request, &job->input, &job->params); !s.ok()) {
      return Done(s);
    }
    job->model = request.model();
    job->echo_id = request.request_id().empty() ? core_->NewPublicId() : request.request_id();
    job->cache_salt = service->keys().TenantSalt(InferenceService::AuthorizationOf(ctx));
    job->arrival = arrival;
    job->deadline = deadline;
    if (!service->ScheduleProducer([this, job] { Produce(*job); })) {
      return Done(absl::ResourceExhaustedError(
          "the server is at capacity (too many concurrent Generate calls); retry later"));
    }
  }

  void Push(pb::GenerateResponse msg) {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(msg));
    if (!writing_) {
      writing_ = true;
      StartWrite(&queue_.front());
    }
  }

  // Last use of `this` by the producer: Finish may lead to OnDone and deletion at once.
  void Done(const absl::Status& status) {
    core_->metrics().CountRequest("grpc", "Generate", absl::StatusCodeToString(status.code()));
    const grpc::Status final_status = ToGrpc(status);
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      producer_done_ = true;
      final_status_ = final_status;
      finish = !writing_;
    }
    if (finish) Finish(final_status);
  }

  // On a producer thread: admission first, so a flood of calls waits (or is refused) before
  // any of them costs tokenization, then Prepare, then the generation on the slots it holds.
  void Produce(const Job& job) {
    const int slots =
        static_cast<int>(std::clamp<int64_t>(job.params.n, 1, core_->options().limits.max_n));
    absl::StatusOr<std::vector<Admission::Ticket>> tickets =
        core_->admission().Acquire(slots, job.deadline, &cancel_);
    if (!tickets.ok()) return Done(tickets.status());
    absl::StatusOr<PreparedRequest> prepared =
        core_->Prepare(job.model, job.input, job.params, core_->NewRequestId(), job.deadline);
    if (!prepared.ok()) return Done(prepared.status());
    prepared->arrival = job.arrival;
    prepared->cache_salt = job.cache_salt;
    if (tickets->size() != static_cast<size_t>(prepared->params.n)) {
      return Done(absl::InternalError("admission slots do not match the number of choices"));
    }
    const std::string& id = job.echo_id;
    const GenerationParams& params = job.params;
    const tokenizer::Tokenizer& tok = core_->model().tokenizer();
    const bool with_logprobs = params.logprobs;
    // Chats of a model that thinks, or with tools: each choice's text taken apart into
    // reasoning, answer and tool calls (chat_output_split.h).
    const bool split = prepared->reasoning_start != ReasoningStart::kNone ||
                       prepared->tool_call_format != ToolCallFormat::kNone;
    std::vector<ChatOutputSplitter> splitters(
        split ? prepared->params.n : 0,
        ChatOutputSplitter(prepared->reasoning_start, prepared->tool_call_format,
                           &prepared->tools));
    uint32_t calls = 0;  // choice 0's calls so far (the public API streams one choice)
    absl::StatusOr<std::vector<ChoiceResult>> results = core_->Generate(
        *prepared, &cancel_,
        [&](uint32_t index, const ChoiceDelta& delta) {
          pb::GenerateResponse msg;
          msg.set_request_id(id);
          if (splitters.empty()) {
            msg.set_text(delta.text);
          } else {
            SetParts(splitters[index].Feed(delta.text), &calls, &msg);
          }
          for (const PromptTokenInfo& p : delta.prompt_logprobs) {
            pb::PromptLogprob* out = msg.add_prompt_logprobs();
            out->set_token_id(p.token.id);
            out->set_token(std::string(tok.TokenBytes(p.token.id)));
            out->set_logprob(p.token.logprob);
            out->set_rank(p.rank);
            for (const auto& [top_id, lp] : p.token.top) {
              pb::TopLogprob* top = out->add_top_logprobs();
              top->set_token_id(top_id);
              top->set_token(std::string(tok.TokenBytes(top_id)));
              top->set_logprob(lp);
            }
          }
          for (const GeneratedTokenInfo& t : delta.tokens) {
            pb::TokenDelta* d = msg.add_tokens();
            d->set_token_id(t.id);
            if (with_logprobs) d->set_logprob(t.logprob);
            for (const auto& [top_id, lp] : t.top) {
              pb::TopLogprob* top = d->add_top_logprobs();
              top->set_token_id(top_id);
              top->set_token(std::string(tok.TokenBytes(top_id)));
              top->set_logprob(lp);
            }
          }
          Push(std::move(msg));
          return !cancel_.cancelled();
        },
        &*tickets);
    if (!results.ok()) return Done(results.status());
    const ChoiceResult& r = results->front();
    pb::GenerateResponse last;
    last.set_request_id(id);
    if (!splitters.empty()) {
      // What the splitter held back (a tag cut at the end, an unfinished think block, a
      // Llama 3 answer that is all one call).
      SetParts(splitters.front().Finish(), &calls, &last);
    }
    // As the HTTP API: an output that called tools and stopped (by itself or at a stop
    // string) ends with "tool calls".
    const bool stopped = r.reason == FinishReason::kStop || r.reason == FinishReason::kStopString;
    last.set_finish_reason(stopped && calls > 0 ? pb::FINISH_REASON_TOOL_CALLS
                                                : ToPublic(r.reason));
    last.set_matched_stop(r.matched_stop);
    last.mutable_usage()->set_prompt_tokens(static_cast<uint32_t>(prepared->prompt.size()));
    last.mutable_usage()->set_completion_tokens(r.completion_tokens);
    last.mutable_usage()->set_cached_prompt_tokens(r.cached_prompt_tokens);
    Push(std::move(last));
    if (r.reason == FinishReason::kError) return Done(absl::UnavailableError(r.error));
    if (r.reason == FinishReason::kAbort && cancel_.cancelled()) {
      return Done(absl::CancelledError(r.error));
    }
    Done(absl::OkStatus());
  }

  RouterCore* core_;
  CancelToken cancel_;
  absl::Mutex mu_;
  std::deque<pb::GenerateResponse> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool producer_done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_status_ ABSL_GUARDED_BY(mu_);  // set once, with producer_done_
};

void GenerateReactor::OnWriteDone(bool ok) {
  bool finish = false;
  grpc::Status final_status;
  {
    absl::MutexLock lock(&mu_);
    queue_.pop_front();
    if (!ok) cancel_.Cancel();
    if (!queue_.empty()) {
      StartWrite(&queue_.front());
    } else {
      writing_ = false;
      finish = producer_done_;
      if (finish) final_status = final_status_;
    }
  }
  if (finish) Finish(std::move(final_status));
}

}  // namespace

grpc::Status ToGrpc(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

InferenceService::InferenceService(RouterCore* core, const ApiKeys* keys)
    : core_(core),
      keys_(keys),
      producers_(std::max(1, core->options().max_active + core->options().max_queued), 0) {}

InferenceService::~InferenceService() = default;

std::string InferenceService::AuthorizationOf(const grpc::CallbackServerContext* context) {
  const auto& md = context->client_metadata();
  auto it = md.find("authorization");
  return it == md.end() ? "" : std::string(it->second.data(), it->second.size());
}

absl::Status InferenceService::Authorize(grpc::CallbackServerContext* context) const {
  if (!keys_->enabled()) return absl::OkStatus();
  return keys_->Check(AuthorizationOf(context));
}

grpc::ServerWriteReactor<pb::GenerateResponse>* InferenceService::Generate(
    grpc::CallbackServerContext* context, const pb::GenerateRequest* request) {
  return new GenerateReactor(this, core_, context, *request, Authorize(context));
}

grpc::ServerUnaryReactor* InferenceService::Tokenize(grpc::CallbackServerContext* context,
                                                     const pb::TokenizeRequest* request,
                                                     pb::TokenizeResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status status = Authorize(context);
  PromptInput input;
  if (status.ok() && !request->model().empty() &&
      request->model() != core_->model().description().name) {
    status = absl::NotFoundError(absl::StrCat("model '", request->model(), "' does not exist"));
  }
  if (request->has_chat()) {
    input.kind = PromptInput::Kind::kChat;
    for (const pb::ChatMessage& m : request->chat().messages()) {
      input.messages.push_back({{"role", m.role()}, {"content", m.content()}});
    }
    input.add_generation_prompt = request->chat().add_generation_prompt();
  } else {
    input.text = request->text();
  }
  if (status.ok()) {
    const tokenizer::Tokenizer& tok = core_->model().tokenizer();
    absl::StatusOr<Prompt> prompt;
    if (input.kind == PromptInput::Kind::kText) {
      absl::StatusOr<std::vector<int32_t>> ids =
          tok.Encode(input.text, request->add_special_tokens());
      if (ids.ok())
        prompt = Prompt{*std::move(ids), ""};
      else
        prompt = ids.status();
    } else {
      prompt = core_->model().BuildPrompt(input, core_->options().limits.max_chat_messages);
    }
    if (prompt.ok()) {
      for (int32_t id : prompt->token_ids) {
        response->add_token_ids(id);
        const int32_t one[1] = {id};
        response->add_tokens(tok.Decode(one, false));
      }
      response->set_rendered_prompt(prompt->rendered);
    } else {
      status = prompt.status();
    }
  }
  core_->metrics().CountRequest("grpc", "Tokenize", absl::StatusCodeToString(status.code()));
  reactor->Finish(ToGrpc(status));
  return reactor;
}

void InferenceService::FillModelInfo(pb::ModelInfo* info) const {
  const ModelDescription& d = core_->model().description();
  info->set_name(d.name);
  info->set_architecture(d.architecture);
  info->set_max_context_length(static_cast<uint32_t>(d.context_length));
  info->set_vocab_size(static_cast<uint32_t>(d.vocab_size));
  info->set_total_parameters(d.total_parameters);
  info->set_active_parameters_per_token(d.active_parameters);
  for (int32_t id : d.eos_ids) info->add_eos_token_ids(id);
  info->set_bos_token_id(d.bos_id);
  info->set_has_chat_template(d.has_chat_template);
  info->set_ready_worker_groups(static_cast<uint32_t>(core_->pool().HealthyCount()));
}

grpc::ServerUnaryReactor* InferenceService::ListModels(grpc::CallbackServerContext* context,
                                                       const pb::ListModelsRequest*,
                                                       pb::ListModelsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status status = Authorize(context);
  if (status.ok()) FillModelInfo(response->add_models());
  reactor->Finish(ToGrpc(status));
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::GetModelInfo(grpc::CallbackServerContext* context,
                                                         const pb::GetModelInfoRequest* request,
                                                         pb::ModelInfo* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status status = Authorize(context);
  if (status.ok() && !request->model().empty() &&
      request->model() != core_->model().description().name) {
    status = absl::NotFoundError(absl::StrCat("model '", request->model(), "' does not exist"));
  }
  if (status.ok()) FillModelInfo(response);
  reactor->Finish(ToGrpc(status));
  return reactor;
}

}  // namespace expertmesh::router
