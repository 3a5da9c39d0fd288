// `expertmesh bench [--url URL] [--rates 4,16,inf] [--num-requests N] [--schedule FILE ...]
//  [--json OUT] ...`: a serving benchmark client for a running expertmesh server (or any
// OpenAI-compatible one). Streams /v1/completions requests at each request rate (Poisson
// arrivals, or all at once for "inf") or on replayed schedules, and reports per schedule the
// requests completed and failed, output tokens/s, requests/s, TTFT, TPOT and end-to-end latency
// (see tools/cli/bench_report.h for the definitions). Exits 1 when no request completed.
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "tools/cli/bench_run.h"
#include "tools/cli/commands.h"

namespace expertmesh::cli {
namespace {

absl::Status RunBenchCommand(const bench::BenchOptions& options) {
  // A server that closes a connection mid-write must not kill the client.
  std::signal(SIGPIPE, SIG_IGN);
  absl::StatusOr<bench::BenchOutcome> outcome = bench::RunBench(options, stdout);
  if (!outcome.ok()) return outcome.status();
  if (!options.json_out.empty()) std::printf("results in %s\n", options.json_out.c_str());
  if (outcome->completed > 0) return absl::OkStatus();
  std::string first;
  for (const bench::ScheduleReport& r : outcome->reports) {
    if (!r.first_errors.empty()) {
      first = r.first_errors.begin()->second;
      break;
    }
  }
  return absl::UnavailableError(
      absl::StrCat("no request completed (", outcome->failed, " failed); first error: ", first));
}

}  // namespace

Command AddBenchCommand(CLI::App& parent) {
  auto o = std::make_shared<bench::BenchOptions>();
  CLI::App* app = parent.add_subcommand(
      "bench",
      "Benchmark a running server over its OpenAI-compatible HTTP API (streamed "
      "completions at request rates; TTFT, TPOT, latency, throughput)");
  app->add_option("--url", o->url, "Server base URL (a trailing /v1 is fine)")
      ->capture_default_str();
  app->add_option("--model", o->client.model, "\"model\" of each request (default: none sent)");
  app->add_option("--api-key", o->client.api_key, "Sent as Authorization: Bearer KEY")
      ->envname("EXPERTMESH_API_KEY");
  app->add_option("--rates", o->rates,
                  "Request rates in requests/s, comma-separated; inf sends a schedule's requests "
                  "all at once")
      ->delimiter(',')
      ->capture_default_str();
  app->add_option("--num-requests", o->num_requests, "Requests per rate")->capture_default_str();
  app->add_option("--seed", o->seed, "Seed of the arrivals and prompts")->capture_default_str();
  app->add_option("--prompt-kind", o->prompt_kind,
                  "tokens (random token ids; needs --vocab-size or --model-dir), words (random "
                  "English words) or auto (tokens when the vocabulary size is known)")
      ->capture_default_str();
  app->add_option("--prompt-tokens", o->prompt_tokens, "Prompt length (token ids or words)")
      ->capture_default_str();
  app->add_option("--output-tokens", o->output_tokens, "max_tokens of each request")
      ->capture_default_str();
  app->add_option("--vocab-size", o->vocab_size, "Vocabulary size for token-id prompts");
  app->add_option("--model-dir", o->model_dir,
                  "A model directory whose config.json gives the vocabulary size");
  app->add_flag("--ignore-eos,!--no-ignore-eos", o->client.ignore_eos,
                "Send ignore_eos so that every request produces --output-tokens tokens")
      ->capture_default_str();
  app->add_flag("!--insecure", o->client.verify_tls,
                "https: do not check the server's certificate (self-signed test servers)");
  app->add_option("--temperature", o->client.temperature, "Sampling temperature")
      ->capture_default_str();
  app->add_option("--max-concurrency", o->client.max_concurrency,
                  "HTTP clients (requests in flight) at most")
      ->capture_default_str();
  app->add_option("--warmup", o->warmup, "Requests sent and not counted before the schedules")
      ->capture_default_str();
  app->add_option("--schedule", o->schedule_files,
                  "Replay a schedule instead of --rates (repeatable): a tools/gpu/schedule.py "
                  "file (arrival times; prompts from the prompt options) or a --save-schedule "
                  "JSON file (arrivals, prompts and lengths as written)");
  app->add_option("--save-schedule", o->save_schedule,
                  "Write the schedules this run sends (with their prompts) as JSON, for "
                  "--schedule");
  app->add_option("--json", o->json_out, "Write the results as JSON to this file");
  app->add_option("--request-timeout-s", o->client.request_timeout_s,
                  "A request that receives nothing for this long fails as a timeout")
      ->capture_default_str();
  app->add_option("--connect-timeout-s", o->client.connect_timeout_s, "Connect time limit")
      ->capture_default_str();
  app->add_option("--engine-label", o->engine_label,
                  "engine= of the one-line \"serving ...\" records (tools/gpu/compare.py)")
      ->capture_default_str();
  return {app, [o] { return RunBenchCommand(*o); }};
}

}  // namespace expertmesh::cli
