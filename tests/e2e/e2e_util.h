// What the end-to-end tests share: where the binaries they start are built, the tiny model they
// serve, and an OpenAI streaming completion read event by event over loopback.
#ifndef EXPERTMESH_TESTS_E2E_E2E_UTIL_H_
#define EXPERTMESH_TESTS_E2E_E2E_UTIL_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace expertmesh::e2e {

// The build's bin/ directory (expertmesh, expertmesh-worker, expertmesh-router).
const std::string& BinDir();

// The first of `names` that is not built in BinDir(), or "" when all are (tests skip visibly).
std::string MissingBinary(const std::vector<std::string>& names);

// The tiny random Qwen3-MoE (served as "tiny-qwen3") the e2e tests share; made once.
absl::StatusOr<std::string> TinyQwen3Model();

// A greedy completion request for "tiny-qwen3" that ignores EOS; streamed with usage.
nlohmann::json CompletionBody(const std::vector<int32_t>& prompt, int max_tokens, bool stream);

struct CompletionStream {
  int status = 0;     // HTTP status; -1 when no response arrived
  bool done = false;  // "data: [DONE]" seen
  std::string error;  // an error event's JSON, or the transport error
  std::string text;   // the choices' text, concatenated
  int64_t completion_tokens = -1, prompt_tokens = -1;  // from the usage event
  size_t received_bytes = 0;
  absl::Time ended;  // when the response ended
};

// POSTs `body` to 127.0.0.1:`port`/v1/completions and reads the event stream to its end;
// `on_first_chunk` (optional) runs once, when the first event with choices arrives.
CompletionStream StreamCompletion(int port, const nlohmann::json& body, int read_timeout_s,
                                  const std::function<void()>& on_first_chunk);

}  // namespace expertmesh::e2e

#endif  // EXPERTMESH_TESTS_E2E_E2E_UTIL_H_
