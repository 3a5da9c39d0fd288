#include "router/openai_handlers.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "httplib.h"
#include "router/openai_request.h"
#include "router/openai_response.h"

namespace expertmesh::router {
namespace {

struct StreamState {
  RouterCore* core;
  PreparedRequest request;
  ResponseContext ctx;
  bool include_usage = false;
  std::string endpoint;
  CancelToken cancel;
  std::vector<Admission::Ticket> tickets;
};

void SendError(RouterCore* core, const std::string& endpoint, const absl::Status& status,
               httplib::Response& res) {
  res.status = HttpStatusFor(status);
  if (res.status == 429 || res.status == 503) {
    res.set_header("Retry-After", std::to_string(core->options().retry_after_seconds));
  }
  res.set_content(Dump(ErrorJson(status)), "application/json");
  core->metrics().CountRequest("http", endpoint, std::to_string(res.status));
}

bool WriteEvent(httplib::DataSink& sink, const Json& json) {
  const std::string event = absl::StrCat("data: ", Dump(json), "\n\n");
  return sink.write(event.data(), event.size());
}

// Runs the generation inside httplib's content provider (on the connection's pool thread).
void Stream(StreamState& st, httplib::DataSink& sink) {
  const uint32_t n = static_cast<uint32_t>(st.request.params.n);
  std::vector<bool> started(n, false);
  auto on_delta = [&](uint32_t index, const ChoiceDelta& delta) {
    const bool first = st.ctx.chat && !started[index];
    started[index] = true;
    return WriteEvent(sink, StreamChunk(st.ctx, index, &delta, nullptr, first));
  };
  absl::StatusOr<std::vector<ChoiceResult>> results =
      st.core->Generate(st.request, &st.cancel, on_delta, &st.tickets);
  if (!results.ok()) {
    if (!absl::IsCancelled(results.status())) WriteEvent(sink, ErrorJson(results.status()));
    st.core->metrics().CountRequest("http", st.endpoint,
                                    std::to_string(HttpStatusFor(results.status())));
    sink.write("data: [DONE]\n\n", 14);
    sink.done();
    return;
  }
  uint32_t completion = 0, cached = 0;
  std::string error;
  for (uint32_t i = 0; i < n; ++i) {
    const ChoiceResult& r = (*results)[i];
    WriteEvent(sink, StreamChunk(st.ctx, i, nullptr, &r, st.ctx.chat && !started[i]));
    completion += r.completion_tokens;
    cached = std::max(cached, r.cached_prompt_tokens);
    if (r.reason == FinishReason::kError && error.empty()) error = r.error;
  }
  if (!error.empty()) WriteEvent(sink, ErrorJson(absl::UnavailableError(error)));
  if (st.include_usage) {
    WriteEvent(sink, UsageChunk(st.ctx, static_cast<uint32_t>(st.request.prompt.size()), completion,
                                cached));
  }
  sink.write("data: [DONE]\n\n", 14);
  sink.done();
  st.core->metrics().CountRequest("http", st.endpoint, error.empty() ? "200" : "503");
}

}  // namespace

void HandleOpenAiGeneration(RouterCore* core, bool chat, absl::Duration timeout,
                            const httplib::Request& req, httplib::Response& res) {
  const std::string endpoint = chat ? "/v1/chat/completions" : "/v1/completions";
  const absl::Time arrival = absl::Now();
  if (core->draining()) {
    return SendError(core, endpoint, absl::UnavailableError("the server is shutting down"), res);
  }
  absl::StatusOr<OpenAiRequest> parsed = ParseOpenAiRequest(req.body, chat);
  if (!parsed.ok()) return SendError(core, endpoint, parsed.status(), res);
  const absl::Time deadline =
      timeout == absl::InfiniteDuration() ? absl::InfiniteFuture() : arrival + timeout;
  absl::StatusOr<PreparedRequest> prepared =
      core->Prepare(parsed->model, parsed->input, parsed->params, core->NewRequestId(), deadline);
  if (!prepared.ok()) return SendError(core, endpoint, prepared.status(), res);
  prepared->arrival = arrival;
  if (core->pool().HealthyCount() == 0) {
    return SendError(core, endpoint, absl::UnavailableError("no healthy worker group"), res);
  }
  ResponseContext ctx;
  ctx.chat = chat;
  ctx.id = absl::StrCat(chat ? "chatcmpl-" : "cmpl-", prepared->request_id);
  ctx.model = core->model().description().name;
  ctx.created = absl::ToUnixSeconds(arrival);
  ctx.tokenizer = &core->model().tokenizer();
  ctx.logprobs = parsed->params.logprobs;
  res.set_header("X-Request-Id", prepared->request_id);

  if (parsed->stream) {
    auto st = std::make_shared<StreamState>();
    absl::StatusOr<std::vector<Admission::Ticket>> tickets =
        core->admission().Acquire(static_cast<int>(parsed->params.n), deadline, &st->cancel);
    if (!tickets.ok()) return SendError(core, endpoint, tickets.status(), res);
    st->core = core;
    st->request = *std::move(prepared);
    st->ctx = ctx;
    st->include_usage = parsed->include_usage;
    st->endpoint = endpoint;
    st->tickets = *std::move(tickets);
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [st](size_t, httplib::DataSink& sink) {
          Stream(*st, sink);
          return true;
        },
        [st](bool success) {
          if (!success) st->cancel.Cancel();
        });
    return;
  }

  const size_t n = static_cast<size_t>(parsed->params.n);
  std::vector<std::string> texts(n);
  std::vector<std::vector<GeneratedTokenInfo>> tokens(n);
  CancelToken cancel;
  absl::StatusOr<std::vector<ChoiceResult>> results =
      core->Generate(*prepared, &cancel, [&](uint32_t index, const ChoiceDelta& delta) {
        texts[index] += delta.text;
        if (ctx.logprobs) {
          tokens[index].insert(tokens[index].end(), delta.tokens.begin(), delta.tokens.end());
        }
        return true;
      });
  if (!results.ok()) return SendError(core, endpoint, results.status(), res);
  for (const ChoiceResult& r : *results) {
    if (r.reason == FinishReason::kError) {
      return SendError(core, endpoint, absl::UnavailableError(r.error), res);
    }
  }
  res.set_content(Dump(FullResponse(ctx, texts, tokens, *results,
                                    static_cast<uint32_t>(prepared->prompt.size()))),
                  "application/json");
  core->metrics().CountRequest("http", endpoint, "200");
}

}  // namespace expertmesh::router
