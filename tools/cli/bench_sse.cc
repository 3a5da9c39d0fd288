#include "tools/cli/bench_sse.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"

namespace expertmesh::cli::bench {
namespace {

using Json = nlohmann::json;

std::optional<int64_t> IntField(const Json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

// Completions put text in choices[].text; chat completions in choices[].delta.content.
bool HasText(const Json& choice) {
  if (!choice.is_object()) return false;
  const auto text = choice.find("text");
  if (text != choice.end() && text->is_string())
    return !text->get_ref<const std::string&>().empty();
  const auto delta = choice.find("delta");
  if (delta == choice.end() || !delta->is_object()) return false;
  const auto content = delta->find("content");
  return content != delta->end() && content->is_string() &&
         !content->get_ref<const std::string&>().empty();
}

std::string Excerpt(absl::string_view s) {
  constexpr size_t kMax = 120;
  return s.size() <= kMax ? std::string(s) : absl::StrCat(s.substr(0, kMax), "...");
}

}  // namespace

void CompletionStream::Feed(absl::string_view data) {
  // CRLF line ends become LF; a JSON payload never holds a raw CR.
  for (char c : data) {
    if (c != '\r') buffer_.push_back(c);
  }
  size_t start = 0;
  for (size_t end; (end = buffer_.find("\n\n", start)) != std::string::npos; start = end + 2) {
    Event(absl::string_view(buffer_).substr(start, end - start));
  }
  buffer_.erase(0, start);
}

void CompletionStream::Finish() {
  // A partial event at the end of the body is dropped, as the SSE rules say.
  buffer_.clear();
  if (!done_) Fail(Problem::kIncomplete, "the stream ended before \"data: [DONE]\"");
}

void CompletionStream::Event(absl::string_view event) {
  std::string payload;
  bool has_data = false;
  for (absl::string_view line : absl::StrSplit(event, '\n')) {
    if (!absl::ConsumePrefix(&line, "data:")) continue;  // comments, event:, id:, retry:
    absl::ConsumePrefix(&line, " ");
    if (has_data) payload.push_back('\n');
    payload.append(line.data(), line.size());
    has_data = true;
  }
  if (has_data) Data(payload);
}

void CompletionStream::Data(const std::string& payload) {
  if (done_) return;
  if (payload == "[DONE]") {
    done_ = true;
    return;
  }
  const Json j = Json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Fail(Problem::kMalformed,
                absl::StrCat("stream data is not a JSON object: '", Excerpt(payload), "'"));
  }
  if (const auto error = j.find("error"); error != j.end() && !error->is_null()) {
    std::string message = error->dump();
    if (error->is_object()) {
      const auto m = error->find("message");
      if (m != error->end() && m->is_string()) message = m->get<std::string>();
    }
    return Fail(Problem::kErrorEvent, absl::StrCat("the server reported: ", message));
  }
  const auto choices = j.find("choices");
  const auto usage = j.find("usage");
  const bool has_usage = usage != j.end() && usage->is_object();
  if ((choices == j.end() || !choices->is_array()) && !has_usage) {
    return Fail(Problem::kMalformed,
                absl::StrCat("stream data is not a completion chunk: '", Excerpt(payload), "'"));
  }
  if (choices != j.end() && choices->is_array()) {
    for (const Json& choice : *choices) {
      if (HasText(choice)) {
        ++text_chunks_;
        break;
      }
    }
  }
  if (has_usage) {
    completion_tokens_ = IntField(*usage, "completion_tokens");
    prompt_tokens_ = IntField(*usage, "prompt_tokens");
    const auto details = usage->find("prompt_tokens_details");
    if (details != usage->end() && details->is_object()) {
      cached_tokens_ = IntField(*details, "cached_tokens");
    }
  }
}

void CompletionStream::Fail(Problem problem, std::string message) {
  if (problem_ != Problem::kNone) return;
  problem_ = problem;
  problem_message_ = std::move(message);
}

}  // namespace expertmesh::cli::bench
