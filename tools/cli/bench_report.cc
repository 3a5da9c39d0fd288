#include "tools/cli/bench_report.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace expertmesh::cli::bench {
namespace {

using Json = nlohmann::ordered_json;

Json DistributionJson(const Distribution& d) {
  return Json{{"count", d.count}, {"mean", d.mean}, {"p50", d.p50}, {"p99", d.p99}, {"max", d.max}};
}

Json RateJson(const std::optional<double>& rate) {
  if (!rate.has_value()) return nullptr;
  if (std::isinf(*rate)) return "inf";
  return *rate;
}

std::string DistributionText(const char* name, const Distribution& d, int digits) {
  if (d.count == 0) return absl::StrFormat("  %-8s -\n", name);
  return absl::StrFormat("  %-8s mean %.*f  p50 %.*f  p99 %.*f  max %.*f\n", name, digits, d.mean,
                         digits, d.p50, digits, d.p99, digits, d.max);
}

}  // namespace

double Quantile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t i = static_cast<size_t>(q * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(values.size() - 1, i)];
}

Distribution Summarize(const std::vector<double>& values) {
  Distribution d;
  d.count = static_cast<int>(values.size());
  if (values.empty()) return d;
  d.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  d.p50 = Quantile(values, 0.5);
  d.p99 = Quantile(values, 0.99);
  d.max = *std::max_element(values.begin(), values.end());
  return d;
}

ScheduleReport Summarize(const Schedule& schedule, const std::vector<RequestResult>& results) {
  ScheduleReport r;
  r.name = schedule.name;
  r.source = schedule.source;
  r.rate = schedule.rate;
  r.requests = static_cast<int>(results.size());
  std::vector<double> ttft, tpot, e2e;
  double last_end = 0;
  for (const RequestResult& x : results) {
    last_end = std::max(last_end, x.end_s);
    r.connection_retries += x.retries;
    r.max_send_lag_ms = std::max(r.max_send_lag_ms, x.send_lag_s * 1e3);
    if (!x.ok) {
      ++r.failed;
      if (r.errors[x.error_kind]++ == 0) r.first_errors[x.error_kind] = x.error;
      continue;
    }
    ++r.completed;
    r.output_tokens += x.output_tokens;
    r.prompt_tokens += x.prompt_tokens;
    r.cached_prompt_tokens += x.cached_tokens;
    if (!x.tokens_from_usage) ++r.tokens_counted_from_chunks;
    if (x.output_tokens < x.max_tokens) ++r.short_outputs;
    ttft.push_back(x.ttft_s * 1e3);
    e2e.push_back(x.e2e_s * 1e3);
    if (x.output_tokens > 1) {
      tpot.push_back((x.e2e_s - x.ttft_s) * 1e3 / static_cast<double>(x.output_tokens - 1));
    }
  }
  const double first_arrival = schedule.requests.empty() ? 0 : schedule.requests.front().arrival_s;
  r.duration_s = std::max(0.0, last_end - first_arrival);
  if (r.duration_s > 0) {
    r.request_throughput = r.completed / r.duration_s;
    r.output_throughput = static_cast<double>(r.output_tokens) / r.duration_s;
  }
  r.ttft_ms = Summarize(ttft);
  r.tpot_ms = Summarize(tpot);
  r.e2e_ms = Summarize(e2e);
  return r;
}

Json ReportJson(const ScheduleReport& r) {
  Json errors = Json::object();
  for (const auto& [kind, count] : r.errors) {
    errors[kind] = Json{{"count", count}, {"first", r.first_errors.at(kind)}};
  }
  return Json{{"schedule", r.name},
              {"source", r.source},
              {"rate", RateJson(r.rate)},
              {"requests", r.requests},
              {"completed", r.completed},
              {"failed", r.failed},
              {"errors", std::move(errors)},
              {"duration_s", r.duration_s},
              {"request_throughput", r.request_throughput},
              {"output_throughput", r.output_throughput},
              {"output_tokens", r.output_tokens},
              {"prompt_tokens", r.prompt_tokens},
              {"cached_prompt_tokens", r.cached_prompt_tokens},
              {"tokens_counted_from_chunks", r.tokens_counted_from_chunks},
              {"short_outputs", r.short_outputs},
              {"connection_retries", r.connection_retries},
              {"max_send_lag_ms", r.max_send_lag_ms},
              {"ttft_ms", DistributionJson(r.ttft_ms)},
              {"tpot_ms", DistributionJson(r.tpot_ms)},
              {"e2e_ms", DistributionJson(r.e2e_ms)}};
}

std::string ReportText(const ScheduleReport& r) {
  std::string out = absl::StrFormat("== %s (%s)\n", r.name, r.source);
  absl::StrAppendFormat(&out, "  completed %d of %d, failed %d, in %.2f s\n", r.completed,
                        r.requests, r.failed, r.duration_s);
  for (const auto& [kind, count] : r.errors) {
    absl::StrAppendFormat(&out, "  failed: %d x %s, e.g. %s\n", count, kind,
                          r.first_errors.at(kind));
  }
  absl::StrAppendFormat(&out,
                        "  %.2f requests/s, %.1f output tokens/s (%d output tokens; %d prompt "
                        "tokens, %d of them cached)\n",
                        r.request_throughput, r.output_throughput, r.output_tokens, r.prompt_tokens,
                        r.cached_prompt_tokens);
  if (r.short_outputs > 0) {
    absl::StrAppendFormat(&out, "  %d requests stopped before max_tokens\n", r.short_outputs);
  }
  if (r.tokens_counted_from_chunks > 0) {
    absl::StrAppendFormat(&out,
                          "  %d requests came without usage: their tokens are counted as text "
                          "chunks\n",
                          r.tokens_counted_from_chunks);
  }
  out += DistributionText("TTFT ms", r.ttft_ms, 1);
  out += DistributionText("TPOT ms", r.tpot_ms, 2);
  out += DistributionText("E2E ms", r.e2e_ms, 1);
  // Late sends mean the client, not the server, set the pace for those requests.
  if (r.max_send_lag_ms >= 10) {
    absl::StrAppendFormat(&out,
                          "  requests were sent up to %.0f ms after their arrival times (all "
                          "clients busy, see --max-concurrency, or this machine loaded)\n",
                          r.max_send_lag_ms);
  }
  return out;
}

std::string ReportRecord(const ScheduleReport& r, const std::string& engine) {
  const double per = r.completed > 0 ? 1.0 / r.completed : 0;
  return absl::StrFormat(
      "serving engine=%s schedule=\"%s\" requests=%d completed=%d failed=%d prompt_len=%.0f "
      "output_len=%.0f duration_s=%.2f output_tok_s=%.1f req_s=%.2f ttft_ms_mean=%.1f "
      "ttft_ms_p50=%.1f ttft_ms_p99=%.1f tpot_ms_mean=%.2f tpot_ms_p50=%.2f tpot_ms_p99=%.2f "
      "e2e_ms_p50=%.1f e2e_ms_p99=%.1f",
      engine, r.name, r.requests, r.completed, r.failed, r.prompt_tokens * per,
      r.output_tokens * per, r.duration_s, r.output_throughput, r.request_throughput,
      r.ttft_ms.mean, r.ttft_ms.p50, r.ttft_ms.p99, r.tpot_ms.mean, r.tpot_ms.p50, r.tpot_ms.p99,
      r.e2e_ms.p50, r.e2e_ms.p99);
}

}  // namespace expertmesh::cli::bench
