#include "router/openai_handlers.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "router/chat_output_split.h"
#include "router/openai_request.h"
#include "router/openai_response.h"

namespace expertmesh::router {
namespace {

struct StreamState {
  RouterCore* core;
  PreparedRequest request;
  ResponseContext ctx;
  bool include_usage = false;
  std::string echo;  // sent as each choice's first text (completions with "echo")
  std::string endpoint;
  CancelToken* cancel;
  std::vector<Admission::Ticket> tickets;
};

void SendError(RouterCore* core, const std::string& endpoint, const absl::Status& status,
               http::ResponseWriter& res, http::HeaderList headers = {}) {
  const int code = HttpStatusFor(status);
  if (code == 429 || code == 503) {
    headers.emplace_back("Retry-After", std::to_string(core->options().retry_after_seconds));
  }
  res.Respond(code, "application/json", Dump(ErrorJson(status)), std::move(headers));
  core->metrics().CountRequest("http", endpoint, std::to_string(code));
}

bool WriteEvent(http::ResponseWriter& sink, const Json& json) {
  return sink.Write(absl::StrCat("data: ", Dump(json), "\n\n"));
}

// What the client may call this request: its own X-Request-Id when it sent a sane one
// (echoed, never used inside the cluster), else the response's public id.
std::string EchoedRequestId(const http::HttpRequest& req, const std::string& public_id) {
  const std::string_view sent = req.Header("x-request-id");
  if (sent.empty() || sent.size() > 128) return public_id;
  for (char c : sent) {
    if (c < 0x21 || c > 0x7e) return public_id;
  }
  return std::string(sent);
}

// Bytes of the token texts of `tokens` (completions' text_offset advances by them).
size_t TokenTextBytes(const tokenizer::Tokenizer& tok, const std::vector<GeneratedTokenInfo>& t) {
  size_t bytes = 0;
  for (const GeneratedTokenInfo& info : t) bytes += tok.TokenBytes(info.id).size();
  return bytes;
}

// Runs the generation on the handler thread, writing each event as it comes.
void Stream(StreamState& st, http::ResponseWriter& sink) {
  const uint32_t n = static_cast<uint32_t>(st.request.params.n);
  std::vector<bool> started(n, false), echoed(n, false);
  std::vector<size_t> offsets(n, 0);  // each choice's logprobs text_offset so far
  const ChoiceDelta echo{.text = st.echo};
  // The echo is each choice's own first chunk. With logprobs it waits for the choice's first
  // delta, which brings the prompt's logprobs; without, it goes ahead of the generation, so a
  // choice that ends without a token still has it.
  auto send_echo = [&](uint32_t i, const std::vector<PromptTokenInfo>& scored) {
    echoed[i] = true;
    if (st.echo.empty()) return true;
    Json chunk = StreamChunk(st.ctx, i, &echo, nullptr, false);
    if (st.ctx.echo_logprobs) {
      chunk["choices"][0]["logprobs"] = EchoLogprobsJson(st.ctx, st.request.prompt, scored, {});
      for (int32_t id : st.request.prompt) offsets[i] += st.ctx.tokenizer->TokenBytes(id).size();
    }
    return WriteEvent(sink, chunk);
  };
  if (!st.ctx.echo_logprobs) {
    for (uint32_t i = 0; i < n; ++i) send_echo(i, {});
  }
  // Chats of a model that thinks, or with tools: each choice's text taken apart into reasoning,
  // content and tool calls (chat_output_split.h).
  const bool split = st.ctx.reasoning || st.request.tool_call_format != ToolCallFormat::kNone;
  std::vector<ChatOutputSplitter> splitters(
      split ? n : 0, ChatOutputSplitter(st.request.reasoning_start, st.request.tool_call_format,
                                        &st.request.tools));
  std::vector<uint32_t> calls(n, 0);  // each choice's calls sent so far
  auto send_delta = [&](uint32_t index, const ChoiceDelta& delta) {
    const bool first = st.ctx.chat && !started[index];
    started[index] = true;
    const bool ok =
        WriteEvent(sink, StreamChunk(st.ctx, index, &delta, nullptr, first, offsets[index]));
    offsets[index] += TokenTextBytes(*st.ctx.tokenizer, delta.tokens);
    return ok;
  };
  // `delta` with its text taken apart into `parts`. Text held back (a marker cut in two), with
  // no tokens to report, waits for the next delta.
  auto send_parts = [&](uint32_t index, ChoiceDelta delta, ChatOutputSplitter::Parts parts) {
    delta.text = std::move(parts.content);
    delta.reasoning = std::move(parts.reasoning);
    delta.tool_calls = std::move(parts.calls);
    delta.first_call = calls[index];
    calls[index] += static_cast<uint32_t>(delta.tool_calls.size());
    if (delta.text.empty() && delta.reasoning.empty() && delta.tool_calls.empty() &&
        delta.tokens.empty()) {
      return true;
    }
    return send_delta(index, delta);
  };
  auto on_delta = [&](uint32_t index, const ChoiceDelta& delta) {
    if (!echoed[index] && !send_echo(index, delta.prompt_logprobs)) return false;
    if (!split) return send_delta(index, delta);
    return send_parts(index, delta, splitters[index].Feed(delta.text));
  };
  absl::StatusOr<std::vector<ChoiceResult>> results =
      st.core->Generate(st.request, st.cancel, on_delta, &st.tickets);
  if (!results.ok()) {
    if (!absl::IsCancelled(results.status())) WriteEvent(sink, ErrorJson(results.status()));
    st.core->metrics().CountRequest("http", st.endpoint,
                                    std::to_string(HttpStatusFor(results.status())));
    sink.Write("data: [DONE]\n\n");
    sink.EndStream();
    return;
  }
  uint32_t completion = 0, cached = 0;
  std::string error;
  for (uint32_t i = 0; i < n; ++i) {
    const ChoiceResult& r = (*results)[i];
    if (!echoed[i]) send_echo(i, {});  // a choice that ended before its first delta
    ChoiceResult r_out = r;
    if (split) {
      send_parts(i, ChoiceDelta{}, splitters[i].Finish());
      r_out.called_tools = calls[i] > 0;
    }
    WriteEvent(sink, StreamChunk(st.ctx, i, nullptr, &r_out, st.ctx.chat && !started[i]));
    completion += r.completion_tokens;
    cached = std::max(cached, r.cached_prompt_tokens);
    if (r.reason == FinishReason::kError && error.empty()) error = r.error;
  }
  if (!error.empty()) WriteEvent(sink, ErrorJson(absl::UnavailableError(error)));
  if (st.include_usage) {
    WriteEvent(sink, UsageChunk(st.ctx, static_cast<uint32_t>(st.request.prompt.size()), completion,
                                cached));
  }
  sink.Write("data: [DONE]\n\n");
  sink.EndStream();
  st.core->metrics().CountRequest("http", st.endpoint, error.empty() ? "200" : "503");
}

}  // namespace

void HandleOpenAiGeneration(RouterCore* core, const ApiKeys& keys, bool chat,
                            absl::Duration timeout, const http::HttpRequest& req,
                            http::ResponseWriter& res) {
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
  std::string echo;
  if (parsed->echo) {
    // The prompt as the client sent it; token ids (checked against the vocabulary by Prepare)
    // as their text, special tokens included, so the echo shows what the model read.
    echo = parsed->input.kind == PromptInput::Kind::kTokens
               ? core->model().tokenizer().Decode(parsed->input.token_ids, false)
               : parsed->input.text;
  }
  prepared->arrival = arrival;
  const std::string_view authorization = req.Header("authorization");
  prepared->cache_salt =
      keys.TenantSalt(absl::string_view(authorization.data(), authorization.size()));
  if (core->pool().HealthyCount() == 0) {
    return SendError(core, endpoint, absl::UnavailableError("no healthy worker group"), res);
  }
  const std::string public_id = core->NewPublicId();
  ResponseContext ctx;
  ctx.chat = chat;
  ctx.id = absl::StrCat(chat ? "chatcmpl-" : "cmpl-", public_id);
  ctx.model = core->model().description().name;
  ctx.created = absl::ToUnixSeconds(arrival);
  ctx.tokenizer = &core->model().tokenizer();
  ctx.logprobs = parsed->params.logprobs;
  ctx.echo_logprobs = parsed->echo && parsed->params.logprobs;
  ctx.top_logprobs = parsed->params.top_logprobs;
  ctx.prompt_logprobs = parsed->prompt_logprobs;
  ctx.reasoning = chat && prepared->reasoning_start != ReasoningStart::kNone;
  http::HeaderList headers = {{"X-Request-Id", EchoedRequestId(req, ctx.id)}};

  // The client going away (or the server stopping) cancels the request wherever it is:
  // waiting for admission, generating, or streaming.
  CancelToken cancel;
  CancelRegistration on_gone(&res.client_gone(), [&cancel] { cancel.Cancel(); });

  if (parsed->stream) {
    // Admitted before the head is sent, so a refusal is still a plain 429 with Retry-After.
    absl::StatusOr<std::vector<Admission::Ticket>> tickets =
        core->admission().Acquire(static_cast<int>(parsed->params.n), deadline, &cancel);
    if (!tickets.ok()) return SendError(core, endpoint, tickets.status(), res, headers);
    StreamState st;
    st.core = core;
    st.request = *std::move(prepared);
    st.ctx = ctx;
    st.include_usage = parsed->include_usage;
    st.echo = std::move(echo);
    st.endpoint = endpoint;
    st.cancel = &cancel;
    st.tickets = *std::move(tickets);
    headers.emplace_back("Cache-Control", "no-cache");
    headers.emplace_back("X-Accel-Buffering", "no");
    res.BeginStream(200, "text/event-stream", std::move(headers));
    Stream(st, res);
    return;
  }

  const size_t n = static_cast<size_t>(parsed->params.n);
  std::vector<std::string> texts(n, echo);
  std::vector<std::vector<GeneratedTokenInfo>> tokens(n);
  std::vector<std::vector<PromptTokenInfo>> scored(n);
  absl::StatusOr<std::vector<ChoiceResult>> results =
      core->Generate(*prepared, &cancel, [&](uint32_t index, const ChoiceDelta& delta) {
        texts[index] += delta.text;
        scored[index].insert(scored[index].end(), delta.prompt_logprobs.begin(),
                             delta.prompt_logprobs.end());
        if (ctx.logprobs) {
          tokens[index].insert(tokens[index].end(), delta.tokens.begin(), delta.tokens.end());
        }
        return true;
      });
  if (!results.ok()) return SendError(core, endpoint, results.status(), res, headers);
  for (const ChoiceResult& r : *results) {
    if (r.reason == FinishReason::kError) {
      return SendError(core, endpoint, absl::UnavailableError(r.error), res, headers);
    }
  }
  std::vector<std::string> reasonings(n);
  std::vector<std::vector<ToolCall>> calls(n);
  if (ctx.reasoning || prepared->tool_call_format != ToolCallFormat::kNone) {
    for (size_t i = 0; i < n; ++i) {
      ChatOutputSplitter::Parts parts =
          ChatOutputSplitter(prepared->reasoning_start, prepared->tool_call_format,
                             &prepared->tools)
              .Split(texts[i]);
      texts[i] = std::move(parts.content);
      reasonings[i] = std::move(parts.reasoning);
      calls[i] = std::move(parts.calls);
      (*results)[i].called_tools = !calls[i].empty();
    }
  }
  res.Respond(
      200, "application/json",
      Dump(FullResponse(ctx, texts, tokens, *results, prepared->prompt, scored, reasonings, calls)),
      std::move(headers));
  core->metrics().CountRequest("http", endpoint, "200");
}

}  // namespace expertmesh::router
