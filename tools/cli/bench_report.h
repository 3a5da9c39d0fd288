// What `expertmesh bench` reports for one schedule, from its requests' results.
//
// Definitions (those of vLLM's `bench serve`, over completed requests):
//   TTFT   = first chunk with text - send;
//   TPOT   = (end - first chunk with text) / (output tokens - 1), for requests of > 1 token;
//   E2E    = end ("data: [DONE]") - send;
//   duration = last end - first arrival; output tokens/s = completed requests' output tokens /
//   duration; requests/s = completed / duration.
// Percentiles are nearest-rank (sorted[round(q * (n - 1))]), as cuda_serving_bench and
// tools/gpu/hf_bench.py compute them.
#ifndef EXPERTMESH_TOOLS_CLI_BENCH_REPORT_H_
#define EXPERTMESH_TOOLS_CLI_BENCH_REPORT_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tools/cli/bench_client.h"
#include "tools/cli/bench_schedule.h"

namespace expertmesh::cli::bench {

struct Distribution {
  int count = 0;  // values it summarises
  double mean = 0, p50 = 0, p99 = 0, max = 0;
};
// Nearest-rank quantile of `values` (any order); 0 for none.
double Quantile(std::vector<double> values, double q);
Distribution Summarize(const std::vector<double>& values);

struct ScheduleReport {
  std::string name;
  std::string source;
  std::optional<double> rate;
  int requests = 0;
  int completed = 0;
  int failed = 0;
  std::map<std::string, int> errors;                // kind -> failed requests
  std::map<std::string, std::string> first_errors;  // kind -> the first message of that kind
  double duration_s = 0;
  double request_throughput = 0;  // completed requests / s
  double output_throughput = 0;   // output tokens / s
  int64_t output_tokens = 0;
  int64_t prompt_tokens = 0;
  int64_t cached_prompt_tokens = 0;
  int tokens_counted_from_chunks = 0;  // completed requests whose usage did not come
  int short_outputs = 0;               // completed with fewer tokens than max_tokens
  int connection_retries = 0;
  double max_send_lag_ms = 0;
  Distribution ttft_ms, tpot_ms, e2e_ms;
};

ScheduleReport Summarize(const Schedule& schedule, const std::vector<RequestResult>& results);

nlohmann::ordered_json ReportJson(const ScheduleReport& report);
// A few lines for people.
std::string ReportText(const ScheduleReport& report);
// One "serving engine=<engine> schedule=\"...\" key=value ..." line in the form of
// cuda_serving_bench and hf_bench.py, which tools/gpu/compare.py tabulates.
std::string ReportRecord(const ScheduleReport& report, const std::string& engine);

}  // namespace expertmesh::cli::bench

#endif  // EXPERTMESH_TOOLS_CLI_BENCH_REPORT_H_
