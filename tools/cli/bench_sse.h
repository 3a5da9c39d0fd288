// An incremental reader of an OpenAI completions stream (Server-Sent Events): fed the response
// body as it arrives, in pieces of any size, it counts the chunks that carry text, keeps the
// usage of the final chunk (stream_options.include_usage) and notes the first thing wrong with
// the stream (an error event, data that is not JSON, no "data: [DONE]" at the end).
#ifndef EXPERTMESH_TOOLS_CLI_BENCH_SSE_H_
#define EXPERTMESH_TOOLS_CLI_BENCH_SSE_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace expertmesh::cli::bench {

class CompletionStream {
 public:
  enum class Problem {
    kNone,
    kErrorEvent,  // the server sent {"error": {...}} in the stream
    kMalformed,   // a data line that is not JSON, or JSON that is not a chunk
    kIncomplete,  // the body ended before "data: [DONE]"
  };

  // Consumes `data`; complete events are parsed, a partial one waits for the rest.
  void Feed(absl::string_view data);
  // The body ended: a stream without [DONE] is kIncomplete (unless something came first).
  void Finish();

  bool done() const { return done_; }
  // Chunks with non-empty text (a chunk may carry several tokens).
  int text_chunks() const { return text_chunks_; }
  std::optional<int64_t> completion_tokens() const { return completion_tokens_; }
  std::optional<int64_t> prompt_tokens() const { return prompt_tokens_; }
  std::optional<int64_t> cached_tokens() const { return cached_tokens_; }
  Problem problem() const { return problem_; }
  // What went wrong, for people; empty for kNone.
  const std::string& problem_message() const { return problem_message_; }

 private:
  void Event(absl::string_view event);
  void Data(const std::string& payload);
  void Fail(Problem problem, std::string message);

  std::string buffer_;
  bool done_ = false;
  int text_chunks_ = 0;
  std::optional<int64_t> completion_tokens_, prompt_tokens_, cached_tokens_;
  Problem problem_ = Problem::kNone;
  std::string problem_message_;
};

}  // namespace expertmesh::cli::bench

#endif  // EXPERTMESH_TOOLS_CLI_BENCH_SSE_H_
