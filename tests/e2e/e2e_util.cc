#include "tests/e2e/e2e_util.h"

#include <filesystem>

#include "absl/time/clock.h"
#include "httplib.h"
#include "tests/util/shared_model.h"
#include "tools/make_model/make_model.h"

namespace expertmesh::e2e {

const std::string& BinDir() {
  static const std::string* const dir =
      new std::string(std::string(EXPERTMESH_BINARY_DIR) + "/bin");
  return *dir;
}

std::string MissingBinary(const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    if (!std::filesystem::exists(BinDir() + "/" + name)) return BinDir() + "/" + name;
  }
  return "";
}

absl::StatusOr<std::string> TinyQwen3Model() {
  make_model::MakeModelOptions options;
  options.arch = *make_model::ParseArchName("qwen3-moe");
  options.size = "tiny";
  options.out_dir = std::string(EXPERTMESH_BINARY_DIR) + "/e2e-scratch/tiny-qwen3";
  options.seed = 7;
  return testing::MakeSharedModel(options);
}

nlohmann::json CompletionBody(const std::vector<int32_t>& prompt, int max_tokens, bool stream) {
  nlohmann::json body = {{"model", "tiny-qwen3"}, {"prompt", prompt},   {"max_tokens", max_tokens},
                         {"temperature", 0},      {"ignore_eos", true}, {"stream", stream}};
  if (stream) body["stream_options"] = {{"include_usage", true}};
  return body;
}

CompletionStream StreamCompletion(int port, const nlohmann::json& body, int read_timeout_s,
                                  const std::function<void()>& on_first_chunk) {
  CompletionStream out;
  std::string buffer;
  bool first = true;
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(read_timeout_s, 0);
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    out.received_bytes += len;
    buffer.append(data, len);
    for (size_t nl; (nl = buffer.find("\n\n")) != std::string::npos;) {
      const std::string event = buffer.substr(0, nl);
      buffer.erase(0, nl + 2);
      if (event.rfind("data: ", 0) != 0) continue;
      const std::string payload = event.substr(6);
      if (payload == "[DONE]") {
        out.done = true;
        continue;
      }
      nlohmann::json j = nlohmann::json::parse(payload, nullptr, false);
      if (j.is_discarded()) continue;
      if (j.contains("error")) out.error = j["error"].dump();
      if (j.contains("choices") && !j["choices"].empty()) {
        out.text += j["choices"][0].value("text", "");
        if (first && on_first_chunk) {
          first = false;
          on_first_chunk();
        }
      }
      if (j.contains("usage") && j["usage"].is_object()) {
        out.completion_tokens = j["usage"].value("completion_tokens", -1);
        out.prompt_tokens = j["usage"].value("prompt_tokens", -1);
      }
    }
    return true;
  };
  httplib::Response res;
  httplib::Error error;
  if (!client.send(req, res, error)) out.error = httplib::to_string(error);
  out.status = res.status;
  out.ended = absl::Now();
  return out;
}

}  // namespace expertmesh::e2e
