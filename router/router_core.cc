#include "router/router_core.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "router/request_ids.h"

namespace expertmesh::router {

RouterCore::RouterCore(std::unique_ptr<ModelContext> model, WorkerPool* pool,
                       RouterCoreOptions options)
    : model_(std::move(model)),
      pool_(pool),
      options_(options),
      admission_(options.max_active, options.max_queued),
      generator_(pool, model_.get(), &metrics_, options.generator) {}

std::string RouterCore::NewRequestId() const { return NewInternalRequestId(); }

std::string RouterCore::NewPublicId() const { return NewPublicRequestId(); }

absl::StatusOr<PreparedRequest> RouterCore::Prepare(const std::string& model_name,
                                                    const PromptInput& input,
                                                    const GenerationParams& params,
                                                    std::string request_id,
                                                    absl::Time deadline) const {
  const ModelDescription& d = model_->description();
  if (!model_name.empty() && model_name != d.name) {
    absl::Status s = absl::NotFoundError(
        absl::StrCat("model '", model_name, "' does not exist; this server serves '", d.name, "'"));
    s.SetPayload(kParamPayload, absl::Cord("model"));
    return s;
  }
  RETURN_IF_ERROR(ValidateParams(params, options_.limits));
  for (int32_t id : params.stop_token_ids) {
    if (id < 0 || id >= d.vocab_size) {
      return InvalidParam("stop_token_ids",
                          absl::StrCat("stop token id ", id, " is outside the vocabulary"));
    }
  }
  ASSIGN_OR_RETURN(Prompt prompt, model_->BuildPrompt(input, options_.limits.max_chat_messages));
  PreparedRequest r;
  ASSIGN_OR_RETURN(r.max_tokens, ResolveMaxTokens(static_cast<int64_t>(prompt.token_ids.size()),
                                                  params.max_tokens, d.context_length,
                                                  options_.limits, params.default_max_tokens));
  r.request_id = std::move(request_id);
  r.prompt = std::move(prompt.token_ids);
  if (input.kind == PromptInput::Kind::kChat) {
    r.reasoning_start = ReasoningStartOf(model_->chat_template_source(), prompt.rendered);
    // An output constraint (response_format, guided_*) decides the whole output: it is not read
    // for calls (a Llama 3 answer {"name": ..., "parameters": ...} would otherwise look like one).
    if (input.tools.has_value() && !input.tools->empty() && !input.tool_choice_none &&
        params.constraint.kind == OutputConstraint::Kind::kNone) {
      r.tool_call_format = ToolCallFormatOf(model_->chat_template_source());
      if (r.tool_call_format != ToolCallFormat::kNone) r.tools = *input.tools;
    }
  }
  ASSIGN_OR_RETURN(r.grammar, structured_.GrammarText(params.constraint, input, r.reasoning_start,
                                                      model_->chat_template_source()));
  if (!r.grammar.empty() && params.ignore_eos) {
    // The grammar decides where a constrained output ends (the worker refuses both too).
    return InvalidParam("ignore_eos",
                        "'ignore_eos' cannot be combined with structured output or a required "
                        "tool call: the output ends where the constraint is complete");
  }
  r.params = params;
  r.deadline = deadline;
  return r;
}

absl::StatusOr<std::vector<ChoiceResult>> RouterCore::Generate(
    const PreparedRequest& request, CancelToken* cancel, const DeltaFn& on_delta,
    std::vector<Admission::Ticket>* held) {
  CancelToken local;
  CancelRegistration forward(cancel, [&local] { local.Cancel(); });
  {
    absl::MutexLock lock(&mu_);
    if (draining_) return absl::UnavailableError("the server is shutting down");
    inflight_.insert(&local);
  }
  struct Untrack {
    RouterCore* core;
    CancelToken* token;
    ~Untrack() {
      absl::MutexLock lock(&core->mu_);
      core->inflight_.erase(token);
    }
  } untrack{this, &local};

  const int n = static_cast<int>(request.params.n);
  std::vector<Admission::Ticket> tickets;
  if (held != nullptr && !held->empty()) {
    tickets = std::move(*held);
  } else {
    ASSIGN_OR_RETURN(tickets, admission_.Acquire(n, request.deadline, &local));
  }
  metrics_.AddPromptTokens(request.prompt.size() * n);

  // Serialises the choices' on_delta calls (the contract: never concurrently); it guards the
  // caller's state, no local here, so there is nothing to annotate.
  absl::Mutex out_mu;
  std::vector<absl::StatusOr<ChoiceResult>> results(n, absl::UnknownError("not run"));
  auto run_choice = [&](int index) {
    results[index] = generator_.Run(request, index, &local, [&](const ChoiceDelta& delta) {
      absl::MutexLock lock(&out_mu);
      return on_delta(index, delta);
    });
    if (!results[index].ok()) local.Cancel();
  };
  std::vector<std::thread> others;
  for (int i = 1; i < n; ++i) others.emplace_back(run_choice, i);
  run_choice(0);
  for (std::thread& t : others) t.join();
  metrics_.request_latency().Observe(absl::ToDoubleSeconds(absl::Now() - request.arrival));

  std::vector<ChoiceResult> out;
  // The first real error wins over the CANCELLED its cancellation caused in the others.
  for (auto& r : results) {
    if (!r.ok() && !absl::IsCancelled(r.status())) return r.status();
  }
  for (auto& r : results) {
    if (!r.ok()) return r.status();
    out.push_back(*std::move(r));
  }
  return out;
}

int RouterCore::Drain(absl::Duration grace) {
  StartDraining();
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return inflight_.empty(); };
  if (mu_.AwaitWithTimeout(absl::Condition(&idle), grace)) return 0;
  const int left = static_cast<int>(inflight_.size());
  for (CancelToken* t : inflight_) t->Cancel();
  mu_.Await(absl::Condition(&idle));
  return left;
}

}  // namespace expertmesh::router
