// Request schedules for `expertmesh bench`: when each request is sent and what it asks for.
//
// A schedule comes from one of three places:
//   - generated: Poisson arrivals at a rate (exponential gaps, seeded), or every request at time
//     0 for rate "inf", with prompts made from a PromptSpec;
//   - a tools/gpu/schedule.py text file ("# rate=R count=N seed=S", then one arrival time in
//     seconds per line): the arrivals cuda_serving_bench and hf_bench.py replay, with prompts
//     made from a PromptSpec;
//   - a JSON file written by WriteSchedules: arrivals, prompts and output lengths exactly as a
//     previous run sent them, to replay the same requests against another server.
//
// Prompts are seeded by (seed, schedule index, request index), so no two requests of a run
// share a prompt and the server's prefix cache cannot serve one request from another.
#ifndef EXPERTMESH_TOOLS_CLI_BENCH_SCHEDULE_H_
#define EXPERTMESH_TOOLS_CLI_BENCH_SCHEDULE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace expertmesh::cli::bench {

struct ScheduledRequest {
  double arrival_s = 0;             // from the start of the schedule
  std::vector<int32_t> prompt_ids;  // sent as a token array when not empty
  std::string prompt_text;          // sent as text otherwise
  int max_tokens = 0;
};

struct Schedule {
  std::string name;            // "rate=4 count=24 seed=1", as schedule.py writes its header
  std::optional<double> rate;  // requests/s, +inf for all at once; unset when a file has none
  std::string source;          // "generated" or the file it was read from
  std::vector<ScheduledRequest> requests;  // arrivals non-decreasing
};

// How prompts are made for generated and schedule.py schedules.
struct PromptSpec {
  enum class Kind { kTokens, kWords };
  Kind kind = Kind::kWords;
  int prompt_tokens = 256;  // ids per prompt (kTokens) or words per prompt (kWords)
  int output_tokens = 64;   // max_tokens of every request
  int64_t vocab_size = 0;   // kTokens: ids are drawn from [2, vocab_size)
};

// "4", "0.5", "inf": requests per second, > 0. INVALID_ARGUMENT otherwise.
absl::StatusOr<double> ParseRate(absl::string_view text);
// "4", "0.5", "inf": the form names and JSON use.
std::string RateLabel(double rate);

// `count` arrival times of a Poisson process of `rate` requests/s starting at 0 (all 0 for an
// infinite rate); the same (rate, count, seed) gives the same times.
std::vector<double> PoissonArrivals(double rate, int count, uint64_t seed);

// Fills every request's prompt and max_tokens from `spec`, seeded by (seed, schedule_index,
// request index). INVALID_ARGUMENT for a spec that cannot make prompts.
absl::Status FillPrompts(const PromptSpec& spec, uint64_t seed, int schedule_index,
                         Schedule* schedule);

// A Poisson schedule of `count` requests at `rate` with prompts from `spec`.
absl::StatusOr<Schedule> GenerateSchedule(double rate, int count, uint64_t seed, int schedule_index,
                                          const PromptSpec& spec);

// Reads `path`: a schedule.py text file (one schedule, its prompts made from `spec` as
// FillPrompts does with `seed` and `first_index`) or a JSON file of WriteSchedules (its schedules
// exactly as written). NOT_FOUND / INVALID_ARGUMENT naming the file and what is wrong.
absl::StatusOr<std::vector<Schedule>> ReadScheduleFile(const std::string& path,
                                                       const PromptSpec& spec, uint64_t seed,
                                                       int first_index);

// Writes `schedules` (arrivals, prompts, max_tokens) as JSON that ReadScheduleFile reads back.
absl::Status WriteSchedules(const std::string& path, const std::vector<Schedule>& schedules);

}  // namespace expertmesh::cli::bench

#endif  // EXPERTMESH_TOOLS_CLI_BENCH_SCHEDULE_H_
