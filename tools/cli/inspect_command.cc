// `expertmesh inspect DIR [--tp N] [--ep N] [--kv-tokens N] [--quantize fp8]
// [--quantize-lm-head fp8]`: architecture, parameter counts, the checkpoint on disk and the
// per-rank memory plan of a model directory (as the worker loads it with those flags).
#include <cstdio>
#include <memory>
#include <string>

#include "model/plan/inspect_report.h"
#include "tools/cli/commands.h"

namespace expertmesh::cli {

Command AddInspectCommand(CLI::App& parent) {
  struct Flags {
    std::string dir;
    model::InspectOptions options;
    std::string quantize = "none";
    std::string quantize_lm_head = "none";
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* app = parent.add_subcommand(
      "inspect", "Print a model's architecture, parameter counts and per-rank memory plan");
  app->add_option("dir", flags->dir, "Model directory (config.json, *.safetensors)")->required();
  app->add_option("--tp", flags->options.tp, "Tensor-parallel ranks")->check(CLI::PositiveNumber);
  app->add_option("--ep", flags->options.ep, "Expert-parallel ranks")->check(CLI::PositiveNumber);
  app->add_option("--kv-tokens", flags->options.kv_tokens, "Tokens of KV cache to size per rank")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--quantize", flags->quantize,
                  "none | fp8: plan the weights as the worker keeps them with --quantize fp8 "
                  "(linear weights of a bf16 checkpoint in 128x128-block fp8)")
      ->check(CLI::IsMember({"none", "fp8"}))
      ->capture_default_str();
  app->add_option("--quantize-lm-head", flags->quantize_lm_head,
                  "none | fp8: plan lm_head as the worker keeps it with --quantize-lm-head fp8")
      ->check(CLI::IsMember({"none", "fp8"}))
      ->capture_default_str();
  return {app, [flags]() -> absl::Status {
            flags->options.at_load = {.fp8 = flags->quantize == "fp8",
                                      .fp8_lm_head = flags->quantize_lm_head == "fp8"};
            absl::StatusOr<model::InspectReport> report =
                model::BuildInspectReport(flags->dir, flags->options);
            if (!report.ok()) return report.status();
            std::fputs(report->text.c_str(), stdout);
            // A checkpoint that does not match its config is an error after the report.
            return report->checkpoint;
          }};
}

}  // namespace expertmesh::cli
