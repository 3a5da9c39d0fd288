#include "tools/cli/bench_run.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "model/config/model_config.h"
#include "tools/cli/bench_schedule.h"

namespace expertmesh::cli::bench {
namespace {

using Json = nlohmann::ordered_json;

// Warm-up prompts are seeded apart from every schedule's.
constexpr int kWarmupScheduleIndex = 1 << 20;

absl::StatusOr<PromptSpec> MakePromptSpec(const BenchOptions& o) {
  PromptSpec spec;
  spec.prompt_tokens = o.prompt_tokens;
  spec.output_tokens = o.output_tokens;
  spec.vocab_size = o.vocab_size;
  if (spec.vocab_size <= 0 && !o.model_dir.empty()) {
    ASSIGN_OR_RETURN(model::ModelConfig config, model::LoadModelConfig(o.model_dir));
    spec.vocab_size = config.vocab_size;
  }
  if (o.prompt_kind == "tokens") {
    spec.kind = PromptSpec::Kind::kTokens;
  } else if (o.prompt_kind == "words") {
    spec.kind = PromptSpec::Kind::kWords;
  } else if (o.prompt_kind == "auto") {
    spec.kind = spec.vocab_size > 0 ? PromptSpec::Kind::kTokens : PromptSpec::Kind::kWords;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--prompt-kind '", o.prompt_kind, "': tokens, words or auto"));
  }
  return spec;
}

absl::StatusOr<std::vector<Schedule>> MakeSchedules(const BenchOptions& o, const PromptSpec& spec) {
  std::vector<Schedule> schedules;
  if (!o.schedule_files.empty()) {
    for (const std::string& path : o.schedule_files) {
      ASSIGN_OR_RETURN(std::vector<Schedule> read,
                       ReadScheduleFile(path, spec, o.seed, static_cast<int>(schedules.size())));
      for (Schedule& s : read) schedules.push_back(std::move(s));
    }
    return schedules;
  }
  if (o.rates.empty()) return absl::InvalidArgumentError("--rates is empty");
  for (const std::string& text : o.rates) {
    ASSIGN_OR_RETURN(double rate, ParseRate(text));
    ASSIGN_OR_RETURN(Schedule s, GenerateSchedule(rate, o.num_requests, o.seed,
                                                  static_cast<int>(schedules.size()), spec));
    schedules.push_back(std::move(s));
  }
  return schedules;
}

}  // namespace

absl::StatusOr<BenchOutcome> RunBench(const BenchOptions& o, std::FILE* out) {
  ClientOptions client = o.client;
  ASSIGN_OR_RETURN(client.endpoint, ParseUrl(o.url));
  if (client.max_concurrency < 1) {
    return absl::InvalidArgumentError("--max-concurrency must be >= 1");
  }
  if (o.warmup < 0) return absl::InvalidArgumentError("--warmup must be >= 0");
  ASSIGN_OR_RETURN(PromptSpec spec, MakePromptSpec(o));
  ASSIGN_OR_RETURN(std::vector<Schedule> schedules, MakeSchedules(o, spec));
  if (!o.save_schedule.empty()) RETURN_IF_ERROR(WriteSchedules(o.save_schedule, schedules));

  BenchOutcome outcome;
  Json& j = outcome.json;
  j["tool"] = "expertmesh bench";
  j["url"] = client.endpoint.ToString();
  j["model"] = o.client.model.empty() ? Json(nullptr) : Json(o.client.model);
  j["prompt_kind"] = spec.kind == PromptSpec::Kind::kTokens ? "tokens" : "words";
  j["prompt_tokens"] = spec.prompt_tokens;
  j["output_tokens"] = spec.output_tokens;
  j["ignore_eos"] = client.ignore_eos;
  j["temperature"] = client.temperature;
  j["max_concurrency"] = client.max_concurrency;
  j["seed"] = o.seed;
  std::fprintf(out, "expertmesh bench: %s, %zu schedule(s), up to %d requests at once\n",
               client.endpoint.ToString().c_str(), schedules.size(), client.max_concurrency);
  std::fflush(out);

  if (o.warmup > 0) {
    ASSIGN_OR_RETURN(Schedule warm, GenerateSchedule(std::numeric_limits<double>::infinity(),
                                                     o.warmup, o.seed, kWarmupScheduleIndex, spec));
    const ScheduleReport w = Summarize(warm, RunSchedule(client, warm));
    j["warmup"] = Json{{"requests", w.requests}, {"completed", w.completed}};
    std::fprintf(out, "warm-up: %d of %d requests completed\n", w.completed, w.requests);
    std::fflush(out);
  }

  j["completed"] = 0;
  j["failed"] = 0;
  j["results"] = Json::array();
  for (const Schedule& s : schedules) {
    ScheduleReport report = Summarize(s, RunSchedule(client, s));
    outcome.completed += report.completed;
    outcome.failed += report.failed;
    j["results"].push_back(ReportJson(report));
    j["completed"] = outcome.completed;
    j["failed"] = outcome.failed;
    std::fprintf(out, "%s%s\n", ReportText(report).c_str(),
                 ReportRecord(report, o.engine_label).c_str());
    std::fflush(out);
    if (!o.json_out.empty()) RETURN_IF_ERROR(WriteStringToFile(o.json_out, j.dump(2) + "\n"));
    outcome.reports.push_back(std::move(report));
  }
  return outcome;
}

}  // namespace expertmesh::cli::bench
