// Runs one generated choice end to end: picks a worker group, streams the request to it,
// retries on another group when one fails before its first token, detokenizes incrementally,
// applies stop strings, and aborts the worker request when the client goes away, the deadline
// passes or a stop string matches. The API layers (HTTP, gRPC) call it once per choice.
//
// Thread safety: Run may be called concurrently.
#ifndef EXPERTMESH_ROUTER_GENERATOR_H_
#define EXPERTMESH_ROUTER_GENERATOR_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "router/cancel_token.h"
#include "router/generation_params.h"
#include "router/metrics.h"
#include "router/model_context.h"
#include "router/reasoning_split.h"
#include "router/tool_calls.h"
#include "router/worker_pool.h"

namespace expertmesh::router {

// A validated, tokenized request.
struct PreparedRequest {
  // Internal id (RouterCore::NewRequestId): the workers' key, never shown to the client.
  std::string request_id;
  // The tenant's prefix-cache salt (ApiKeys::TenantSalt); empty shares the cache.
  std::string cache_salt;
  std::vector<int32_t> prompt;
  GenerationParams params;
  uint32_t max_tokens = 0;
  absl::Time arrival = absl::Now();
  absl::Time deadline = absl::InfiniteFuture();
  // Chats of a model that thinks: how the output begins (router/reasoning_split.h).
  ReasoningStart reasoning_start = ReasoningStart::kNone;
  // Chats with tools (tool_choice not "none"): how the output's tool calls are written.
  ToolCallFormat tool_call_format = ToolCallFormat::kNone;
  // The request's tools when tool_call_format is set (their schemas type XML-style arguments).
  nlohmann::ordered_json tools;
  // Structured output: the GBNF text the output must match (router/structured_output.h); empty
  // when unconstrained.
  std::string grammar;
};

struct GeneratedTokenInfo {
  int32_t id = 0;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  // (token id, logprob), most likely first
};

// A prompt token scored under the logits of the position before it (prompt logprobs).
struct PromptTokenInfo {
  GeneratedTokenInfo token;
  int32_t rank = 0;  // 1 + the number of tokens more likely than it
};

// Output since the previous delta. `text` is whole UTF-8 characters, stop strings removed.
struct ChoiceDelta {
  std::string text;
  // Chats of a model that thinks: the reasoning part of this output (`text` is then the content
  // part). Filled by the HTTP handler, never by the generator.
  std::string reasoning;
  // Tool calls completed in this output (chats with tools), numbered from first_call on in the
  // choice. Filled by the HTTP handler.
  std::vector<ToolCall> tool_calls;
  uint32_t first_call = 0;
  std::vector<GeneratedTokenInfo> tokens;
  // In the first delta of a request with params.prompt_logprobs: prompt tokens 1..n-1.
  std::vector<PromptTokenInfo> prompt_logprobs;
};

struct ChoiceResult {
  FinishReason reason = FinishReason::kStop;
  std::string matched_stop;
  uint32_t completion_tokens = 0;
  uint32_t cached_prompt_tokens = 0;
  // Why generation ended early (reason kError or kAbort), for the client.
  std::string error;
  std::string group;  // address of the group that served it
  // The output called tools (set by the HTTP handler): finish_reason "tool_calls" for a stop.
  bool called_tools = false;
};

struct GeneratorOptions {
  int max_attempts = 3;
  absl::Duration abort_timeout = absl::Seconds(1);
};

class Generator {
 public:
  Generator(WorkerPool* pool, const ModelContext* model, RouterMetrics* metrics,
            GeneratorOptions options)
      : pool_(pool), model_(model), metrics_(metrics), options_(options) {}

  // Generates choice `index` of `request` (choice i uses seed + i when a seed is given).
  // `on_delta` gets every non-empty delta in order; returning false means the consumer is gone
  // and aborts the generation. Errors, only before any output: UNAVAILABLE (no healthy group or
  // every attempt failed), RESOURCE_EXHAUSTED (all groups at capacity), DEADLINE_EXCEEDED,
  // CANCELLED, INVALID_ARGUMENT (the worker refused the request). After output has started a
  // failure returns a result with reason kError (worker failed) or kAbort and `error` set.
  absl::StatusOr<ChoiceResult> Run(const PreparedRequest& request, uint32_t index,
                                   CancelToken* cancel,
                                   const std::function<bool(const ChoiceDelta&)>& on_delta);

 private:
  WorkerPool* pool_;
  const ModelContext* model_;
  RouterMetrics* metrics_;
  GeneratorOptions options_;
};

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_GENERATOR_H_
