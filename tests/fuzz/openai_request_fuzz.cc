// libFuzzer target for the OpenAI request decoder (router/openai_request.h): arbitrary bytes as
// a /v1/completions or /v1/chat/completions body, then the router's validation of what was
// decoded. Both must answer OK or a clean status with a message, never crash or recurse without
// bound (80,000 nested arrays once crashed the router); token ids that come through are never
// negative (4294967297 once became 1).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "router/openai_request.h"
#include "router/request_validation.h"

namespace {

void Check(bool condition, const char* what) {
  if (!condition) {
    fprintf(stderr, "openai_request_fuzz: violated: %s\n", what);
    abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the endpoint, the rest is the body.
  const bool chat = (data[0] & 1) != 0;
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  absl::StatusOr<expertmesh::router::OpenAiRequest> parsed =
      expertmesh::router::ParseOpenAiRequest(body, chat);
  if (!parsed.ok()) {
    Check(!parsed.status().message().empty(), "an error without a message");
    return 0;
  }
  const absl::Status valid =
      expertmesh::router::ValidateParams(parsed->params, expertmesh::router::RouterLimits{});
  Check(valid.ok() || !valid.message().empty(), "a validation error without a message");
  for (int32_t id : parsed->input.token_ids) Check(id >= 0, "a negative token id");
  return 0;
}
