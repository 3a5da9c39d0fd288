#include "tools/cli/bench_schedule.h"

#include <cmath>
#include <limits>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace expertmesh::cli::bench {
namespace {

using Json = nlohmann::json;

constexpr char kFormat[] = "expertmesh-bench-schedule/1";

// Common short English words: most tokenizers encode each (with its leading space) as one token,
// so a prompt of N words is close to N tokens; the exact count comes back in the usage.
constexpr const char* kWords[] = {
    "the",   "of",     "and",   "to",     "in",    "is",    "was",   "for",   "on",    "that",
    "with",  "as",     "by",    "at",     "from",  "his",   "her",   "an",    "are",   "were",
    "which", "this",   "be",    "or",     "has",   "had",   "first", "one",   "their", "its",
    "new",   "after",  "who",   "they",   "have",  "two",   "been",  "other", "when",  "there",
    "all",   "during", "into",  "school", "time",  "may",   "years", "more",  "most",  "only",
    "over",  "city",   "some",  "world",  "would", "where", "later", "up",    "such",  "used",
    "many",  "can",    "state", "about",  "water", "music", "house", "river", "light", "small"};

// One generator per request: (seed, schedule, request) pick its stream, whatever the order in
// which requests are made.
std::mt19937_64 RequestRng(uint64_t seed, int schedule_index, int request_index) {
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                    static_cast<uint32_t>(schedule_index), static_cast<uint32_t>(request_index)};
  return std::mt19937_64(seq);
}

absl::Status Invalid(const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

// nlohmann's value() throws on a field of another type; this does not.
std::string StringField(const Json& j, const char* key, std::string fallback) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}

Json RateJson(const std::optional<double>& rate) {
  if (!rate.has_value()) return nullptr;
  if (std::isinf(*rate)) return "inf";
  return *rate;
}

absl::StatusOr<std::optional<double>> RateFromJson(const Json& v) {
  if (v.is_null()) return std::optional<double>();
  if (v.is_number()) return std::optional<double>(v.get<double>());
  if (v.is_string()) {
    ASSIGN_OR_RETURN(double rate, ParseRate(v.get<std::string>()));
    return std::optional<double>(rate);
  }
  return absl::InvalidArgumentError("'rate' must be a number, \"inf\" or null");
}

absl::StatusOr<std::vector<Schedule>> ReadJsonSchedules(const std::string& path) {
  ASSIGN_OR_RETURN(Json root, ReadJsonFile(path));
  if (!root.is_object() || StringField(root, "format", "") != kFormat) {
    return Invalid(path, absl::StrCat("not a schedule file (expected \"format\": \"", kFormat,
                                      "\"; schedule.py files are text)"));
  }
  const auto it = root.find("schedules");
  if (it == root.end() || !it->is_array() || it->empty()) {
    return Invalid(path, "'schedules' must be a non-empty array");
  }
  std::vector<Schedule> out;
  for (const Json& js : *it) {
    if (!js.is_object()) return Invalid(path, "every schedule must be an object");
    Schedule s;
    s.name = StringField(js, "name", absl::StrCat("schedule ", out.size()));
    s.source = path;
    const auto rate_field = js.find("rate");
    absl::StatusOr<std::optional<double>> rate =
        RateFromJson(rate_field == js.end() ? Json(nullptr) : *rate_field);
    if (!rate.ok()) return Invalid(path, rate.status().message());
    s.rate = *rate;
    const auto reqs = js.find("requests");
    if (reqs == js.end() || !reqs->is_array() || reqs->empty()) {
      return Invalid(path, absl::StrCat("schedule '", s.name, "' has no requests"));
    }
    for (const Json& jr : *reqs) {
      ScheduledRequest r;
      if (!jr.is_object() || !jr.contains("arrival_s") || !jr["arrival_s"].is_number() ||
          !jr.contains("max_tokens") || !jr["max_tokens"].is_number_integer() ||
          !jr.contains("prompt")) {
        return Invalid(path, absl::StrCat("request ", s.requests.size(), " of '", s.name,
                                          "' needs arrival_s, prompt and max_tokens"));
      }
      r.arrival_s = jr["arrival_s"].get<double>();
      r.max_tokens = jr["max_tokens"].get<int>();
      const Json& p = jr["prompt"];
      if (p.is_string()) {
        r.prompt_text = p.get<std::string>();
      } else if (p.is_array() && !p.empty()) {
        for (const Json& id : p) {
          if (!id.is_number_integer()) {
            return Invalid(path, "a prompt must be a string or an array of token ids");
          }
          r.prompt_ids.push_back(id.get<int32_t>());
        }
      } else {
        return Invalid(path, "a prompt must be a string or an array of token ids");
      }
      if (r.max_tokens < 1) return Invalid(path, "max_tokens must be >= 1");
      if (!s.requests.empty() && r.arrival_s < s.requests.back().arrival_s) {
        return Invalid(path, absl::StrCat("arrivals of '", s.name, "' decrease"));
      }
      s.requests.push_back(std::move(r));
    }
    out.push_back(std::move(s));
  }
  return out;
}

// schedule.py's text format; the header's text is the schedule's name (hf_bench.py names it so).
absl::StatusOr<Schedule> ReadTextSchedule(const std::string& path, const std::string& text) {
  Schedule s;
  s.source = path;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    if (line.front() == '#') {
      s.name =
          std::string(absl::StripLeadingAsciiWhitespace(line.substr(line.find_first_not_of('#'))));
      for (absl::string_view field : absl::StrSplit(s.name, ' ', absl::SkipEmpty())) {
        if (absl::ConsumePrefix(&field, "rate=")) {
          absl::StatusOr<double> rate = ParseRate(field);
          if (rate.ok()) s.rate = *rate;
        }
      }
      continue;
    }
    double t = 0;
    if (!absl::SimpleAtod(line, &t) || !std::isfinite(t) || t < 0) {
      return Invalid(path,
                     absl::StrCat("line ", line_number, ": not an arrival time: '", line, "'"));
    }
    if (!s.requests.empty() && t < s.requests.back().arrival_s) {
      return Invalid(path, absl::StrCat("line ", line_number, ": arrivals decrease"));
    }
    s.requests.push_back({.arrival_s = t});
  }
  if (s.requests.empty()) return Invalid(path, "no requests");
  if (s.name.empty()) s.name = path;
  return s;
}

}  // namespace

absl::StatusOr<double> ParseRate(absl::string_view text) {
  const std::string t = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (t == "inf") return std::numeric_limits<double>::infinity();
  double rate = 0;
  if (!absl::SimpleAtod(t, &rate) || !(rate > 0) || std::isnan(rate)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not a request rate (requests/s > 0, or inf)"));
  }
  return rate;
}

std::string RateLabel(double rate) {
  return std::isinf(rate) ? "inf" : absl::StrFormat("%g", rate);
}

std::vector<double> PoissonArrivals(double rate, int count, uint64_t seed) {
  std::vector<double> out(count > 0 ? count : 0, 0.0);
  if (std::isinf(rate)) return out;
  std::mt19937_64 rng(seed);
  std::exponential_distribution<double> gap(rate);
  double t = 0;
  for (double& a : out) {
    a = t;
    t += gap(rng);
  }
  return out;
}

absl::Status FillPrompts(const PromptSpec& spec, uint64_t seed, int schedule_index,
                         Schedule* schedule) {
  if (spec.prompt_tokens < 1) return absl::InvalidArgumentError("--prompt-tokens must be >= 1");
  if (spec.output_tokens < 1) return absl::InvalidArgumentError("--output-tokens must be >= 1");
  if (spec.kind == PromptSpec::Kind::kTokens && spec.vocab_size < 3) {
    return absl::InvalidArgumentError(
        "token-id prompts need the vocabulary size (--vocab-size or --model-dir)");
  }
  for (size_t i = 0; i < schedule->requests.size(); ++i) {
    ScheduledRequest& r = schedule->requests[i];
    std::mt19937_64 rng = RequestRng(seed, schedule_index, static_cast<int>(i));
    r.max_tokens = spec.output_tokens;
    r.prompt_ids.clear();
    r.prompt_text.clear();
    if (spec.kind == PromptSpec::Kind::kTokens) {
      // Never 0 or 1: bos / eos of make-model checkpoints (and often padding elsewhere).
      std::uniform_int_distribution<int64_t> id(2, spec.vocab_size - 1);
      for (int t = 0; t < spec.prompt_tokens; ++t) {
        r.prompt_ids.push_back(static_cast<int32_t>(id(rng)));
      }
    } else {
      std::uniform_int_distribution<size_t> word(0, std::size(kWords) - 1);
      for (int t = 0; t < spec.prompt_tokens; ++t) {
        if (t > 0) r.prompt_text += ' ';
        r.prompt_text += kWords[word(rng)];
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Schedule> GenerateSchedule(double rate, int count, uint64_t seed, int schedule_index,
                                          const PromptSpec& spec) {
  if (count < 1) return absl::InvalidArgumentError("--num-requests must be >= 1");
  if (!(rate > 0)) return absl::InvalidArgumentError("a request rate must be > 0");
  Schedule s;
  s.name = absl::StrCat("rate=", RateLabel(rate), " count=", count, " seed=", seed);
  s.rate = rate;
  s.source = "generated";
  for (double t : PoissonArrivals(rate, count, seed)) s.requests.push_back({.arrival_s = t});
  RETURN_IF_ERROR(FillPrompts(spec, seed, schedule_index, &s));
  return s;
}

absl::StatusOr<std::vector<Schedule>> ReadScheduleFile(const std::string& path,
                                                       const PromptSpec& spec, uint64_t seed,
                                                       int first_index) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '{') return ReadJsonSchedules(path);
  ASSIGN_OR_RETURN(Schedule s, ReadTextSchedule(path, text));
  RETURN_IF_ERROR(FillPrompts(spec, seed, first_index, &s));
  return std::vector<Schedule>{std::move(s)};
}

absl::Status WriteSchedules(const std::string& path, const std::vector<Schedule>& schedules) {
  Json list = Json::array();
  for (const Schedule& s : schedules) {
    Json reqs = Json::array();
    for (const ScheduledRequest& r : s.requests) {
      Json prompt = r.prompt_ids.empty() ? Json(r.prompt_text) : Json(r.prompt_ids);
      reqs.push_back(Json{
          {"arrival_s", r.arrival_s}, {"prompt", std::move(prompt)}, {"max_tokens", r.max_tokens}});
    }
    list.push_back(
        Json{{"name", s.name}, {"rate", RateJson(s.rate)}, {"requests", std::move(reqs)}});
  }
  return WriteStringToFile(path,
                           Json{{"format", kFormat}, {"schedules", std::move(list)}}.dump() + "\n");
}

}  // namespace expertmesh::cli::bench
