// `expertmesh inspect DIR [--tp N] [--ep N] [--kv-tokens N]`: architecture, parameter counts,
// the checkpoint on disk and the per-rank memory plan of a model directory.
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
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* app = parent.add_subcommand(
      "inspect", "Print a model's architecture, parameter counts and per-rank memory plan");
  app->add_option("dir", flags->dir, "Model directory (config.json, *.safetensors)")->required();
  app->add_option("--tp", flags->options.tp, "Tensor-parallel ranks")->check(CLI::PositiveNumber);
  app->add_option("--ep", flags->options.ep, "Expert-parallel ranks")->check(CLI::PositiveNumber);
  app->add_option("--kv-tokens", flags->options.kv_tokens, "Tokens of KV cache to size per rank")
      ->check(CLI::NonNegativeNumber);
  return {app, [flags]() -> absl::Status {
            absl::StatusOr<model::InspectReport> report =
                model::BuildInspectReport(flags->dir, flags->options);
            if (!report.ok()) return report.status();
            std::fputs(report->text.c_str(), stdout);
            // A checkpoint that does not match its config is an error after the report.
            return report->checkpoint;
          }};
}

}  // namespace expertmesh::cli
