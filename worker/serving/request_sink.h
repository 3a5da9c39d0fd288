// RequestSink: where the engine loop delivers one request's results (the gRPC stream in the
// service, a recorder in tests).
#ifndef EXPERTMESH_WORKER_SERVING_REQUEST_SINK_H_
#define EXPERTMESH_WORKER_SERVING_REQUEST_SINK_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "worker/sampling/sampler.h"

namespace expertmesh::server {

enum class StreamEnd {
  kNone,       // more to come
  kEos,        // eos or a stop token
  kMaxTokens,  // max_tokens or the context is full
  kAborted,    // Abort RPC
};

struct StreamEvent {
  std::vector<sampling::SampledToken> tokens;
  std::optional<int64_t> cached_prompt_tokens;  // on the request's first event
  // On the request's first event, when it asked for prompt logprobs: prompt tokens 1..n-1.
  std::vector<sampling::PromptLogprob> prompt_logprobs;
  StreamEnd end = StreamEnd::kNone;
  // Non-OK ends the stream with this error (rejected request, engine failure, shutdown).
  absl::Status error;

  bool IsLast() const { return end != StreamEnd::kNone || !error.ok(); }
};

class RequestSink {
 public:
  virtual ~RequestSink() = default;
  // Called on the engine loop thread, in order; nothing follows an event with IsLast().
  // Must not block on the client (queue and return).
  virtual void Deliver(StreamEvent event) = 0;
};

}  // namespace expertmesh::server

#endif  // EXPERTMESH_WORKER_SERVING_REQUEST_SINK_H_
