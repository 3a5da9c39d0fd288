// One `expertmesh bench` run: the schedules (generated at --rates, or read with --schedule),
// optional warm-up requests, each schedule sent in turn, a report per schedule printed as it
// finishes, and the machine-readable results (written after every schedule, so a run cut off
// keeps what it measured).
#ifndef EXPERTMESH_TOOLS_CLI_BENCH_RUN_H_
#define EXPERTMESH_TOOLS_CLI_BENCH_RUN_H_

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tools/cli/bench_client.h"
#include "tools/cli/bench_report.h"

namespace expertmesh::cli::bench {

struct BenchOptions {
  std::string url = "http://127.0.0.1:8000";
  ClientOptions client;  // its endpoint is set from `url`
  std::vector<std::string> rates = {"4", "16", "inf"};
  int num_requests = 64;  // per rate
  uint64_t seed = 1;
  std::string prompt_kind = "auto";  // tokens | words | auto (tokens when the vocabulary is known)
  int prompt_tokens = 256;
  int output_tokens = 64;
  int64_t vocab_size = 0;  // for token prompts; 0: from model_dir's config.json
  std::string model_dir;
  std::vector<std::string> schedule_files;  // replace `rates` when given
  std::string save_schedule;                // write the schedules (with prompts) here
  std::string json_out;
  int warmup = 0;                                // requests sent (and not counted) first
  std::string engine_label = "expertmesh_http";  // the engine= of the one-line records
};

struct BenchOutcome {
  nlohmann::ordered_json json;  // what --json writes
  std::vector<ScheduleReport> reports;
  int completed = 0;
  int failed = 0;
};

// INVALID_ARGUMENT / NOT_FOUND for options or files that cannot make schedules; a server that
// cannot be reached or fails requests is reported in the outcome, not as an error. Progress and
// reports go to `out`.
absl::StatusOr<BenchOutcome> RunBench(const BenchOptions& options, std::FILE* out);

}  // namespace expertmesh::cli::bench

#endif  // EXPERTMESH_TOOLS_CLI_BENCH_RUN_H_
