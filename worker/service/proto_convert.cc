#include "worker/service/proto_convert.h"

#include <algorithm>

namespace expertmesh::server {

scheduler::GenerationRequest FromProto(const internal_api::SubmitRequest& request) {
  scheduler::GenerationRequest out;
  out.id = request.request_id();
  out.prompt.assign(request.prompt_token_ids().begin(), request.prompt_token_ids().end());
  const internal_api::Sampling& s = request.sampling();
  out.sampling.temperature = s.temperature();
  out.sampling.top_p = s.top_p() == 0.0f ? 1.0f : s.top_p();
  out.sampling.top_k = s.top_k();
  out.sampling.min_p = s.min_p();
  out.sampling.repetition_penalty = s.repetition_penalty() == 0.0f ? 1.0f : s.repetition_penalty();
  out.sampling.presence_penalty = s.presence_penalty();
  out.sampling.frequency_penalty = s.frequency_penalty();
  out.sampling.seed = s.seed();
  out.sampling.logprobs = s.logprobs();
  out.sampling.top_logprobs = static_cast<int32_t>(std::min<uint32_t>(s.top_logprobs(), 1u << 30));
  out.max_tokens = request.max_tokens();
  out.stop_token_ids.assign(request.stop_token_ids().begin(), request.stop_token_ids().end());
  out.ignore_eos = request.ignore_eos();
  out.cache_salt = request.cache_salt();
  if (request.has_prompt_logprobs()) {
    // Clamped only so that a huge value stays huge (and is refused by the engine's validation).
    out.prompt_logprobs =
        static_cast<int32_t>(std::min<uint32_t>(request.prompt_logprobs(), 1u << 30));
  }
  return out;
}

internal_api::StopReason ToProto(StreamEnd end) {
  switch (end) {
    case StreamEnd::kNone:
      return internal_api::STOP_REASON_UNSPECIFIED;
    case StreamEnd::kEos:
      return internal_api::STOP_REASON_EOS;
    case StreamEnd::kMaxTokens:
      return internal_api::STOP_REASON_MAX_TOKENS;
    case StreamEnd::kAborted:
      return internal_api::STOP_REASON_ABORTED;
  }
  return internal_api::STOP_REASON_UNSPECIFIED;
}

internal_api::SubmitResponse ToProto(const StreamEvent& event) {
  internal_api::SubmitResponse response;
  for (const sampling::SampledToken& token : event.tokens) {
    internal_api::GeneratedToken* out = response.add_tokens();
    out->set_token_id(token.token);
    out->set_logprob(token.logprob);
    for (const sampling::TokenLogprob& top : token.top_logprobs) {
      internal_api::TopToken* t = out->add_top();
      t->set_token_id(top.token);
      t->set_logprob(top.logprob);
    }
  }
  for (const sampling::PromptLogprob& p : event.prompt_logprobs) {
    internal_api::PromptTokenLogprob* out = response.add_prompt_logprobs();
    out->set_token_id(p.token);
    out->set_logprob(p.logprob);
    out->set_rank(p.rank);
    for (const sampling::TokenLogprob& top : p.top_logprobs) {
      internal_api::TopToken* t = out->add_top();
      t->set_token_id(top.token);
      t->set_logprob(top.logprob);
    }
  }
  response.set_stop_reason(ToProto(event.end));
  if (event.cached_prompt_tokens.has_value()) {
    response.set_cached_prompt_tokens(static_cast<uint32_t>(*event.cached_prompt_tokens));
  }
  return response;
}

internal_api::LoadReport ToLoadReport(const LoadSnapshot& load, const EngineInfo& info, int tp,
                                      int ep) {
  internal_api::LoadReport report;
  report.set_queued_requests(static_cast<uint32_t>(load.queued));
  report.set_running_requests(static_cast<uint32_t>(load.engine.running));
  report.set_free_kv_blocks(static_cast<uint32_t>(load.engine.free_kv_blocks));
  report.set_total_kv_blocks(static_cast<uint32_t>(load.engine.total_kv_blocks));
  report.set_kv_block_size(static_cast<uint32_t>(load.engine.kv_block_size));
  for (uint64_t hash : load.engine.cached_prefix_hashes) report.add_cached_prefix_hashes(hash);
  report.set_model(info.model);
  report.set_max_context_length(static_cast<uint32_t>(info.max_context_length));
  report.set_tp(static_cast<uint32_t>(tp));
  report.set_ep(static_cast<uint32_t>(ep));
  return report;
}

}  // namespace expertmesh::server
