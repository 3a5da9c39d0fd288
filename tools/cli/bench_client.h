// The HTTP side of `expertmesh bench`: streams POST /v1/completions requests to an
// OpenAI-compatible server and times them.
//
// RunSchedule sends a schedule's requests at their arrival times through a bounded pool of
// threads, each with its own HTTP client, so at most `max_concurrency` requests are in flight; a
// request whose arrival finds every client busy waits for one (its send lag says how long).
// Times are taken from the moment a request is sent: TTFT when the first chunk with text
// arrives, end-to-end when "data: [DONE]" arrives. Output tokens come from the final chunk's
// usage (the request asks for stream_options.include_usage), so they are exact.
//
// Nothing here fails a run: a refused connection, an HTTP error, an error event in the stream,
// a malformed or cut-off stream or a timeout is one failed request with its kind and message.
#ifndef EXPERTMESH_TOOLS_CLI_BENCH_CLIENT_H_
#define EXPERTMESH_TOOLS_CLI_BENCH_CLIENT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tools/cli/bench_schedule.h"

namespace expertmesh::cli::bench {

// "http[s]://host[:port][/base]" (a trailing "/v1" is dropped: requests go to base + "/v1/...");
// no scheme means http.
struct Endpoint {
  bool https = false;
  std::string host;
  int port = 80;
  std::string base_path;         // "" or "/prefix"
  std::string Origin() const;    // "http://host:port"
  std::string ToString() const;  // Origin() + base_path
};
absl::StatusOr<Endpoint> ParseUrl(absl::string_view url);

struct ClientOptions {
  Endpoint endpoint;
  std::string model;    // sent as "model" when not empty
  std::string api_key;  // sent as "Authorization: Bearer ..." when not empty
  int max_concurrency = 256;
  bool ignore_eos = true;  // every request produces max_tokens tokens
  double temperature = 0;
  bool verify_tls = true;  // https: check the server's certificate against the system CAs
  double connect_timeout_s = 10;
  double request_timeout_s = 600;  // no byte for this long ends a request as a timeout
  // A connection that fails before any response byte is tried again this many times, as SDK
  // clients do (a burst of connects can overflow a server's listen backlog).
  int connect_retries = 2;
};

struct RequestResult {
  bool ok = false;
  // For a failed request: "connection", "timeout", "http <status>", "stream error",
  // "malformed stream" or "incomplete stream", and what happened.
  std::string error_kind;
  std::string error;
  double send_lag_s = 0;  // sent this long after its arrival time
  double ttft_s = 0;      // from the send to the first chunk with text
  double e2e_s = 0;       // from the send to the end of the stream
  double end_s = 0;       // the end, from the start of the schedule
  int64_t output_tokens = 0;
  bool tokens_from_usage = false;  // false: counted from text chunks (no usage came)
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;
  int max_tokens = 0;
  int retries = 0;
};

// Sends every request of `schedule`; results in the schedule's order.
std::vector<RequestResult> RunSchedule(const ClientOptions& options, const Schedule& schedule);

}  // namespace expertmesh::cli::bench

#endif  // EXPERTMESH_TOOLS_CLI_BENCH_CLIENT_H_
