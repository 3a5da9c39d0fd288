// `make_model_scratch make-model ...`: the make-model subcommand alone, for trying it before the
// full `expertmesh` CLI is assembled.
#include <cstdio>

#include "CLI/CLI.hpp"
#include "tools/cli/command.h"
#include "tools/cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"make-model only"};
  app.require_subcommand(1);
  expertmesh::cli::Command command = expertmesh::cli::AddMakeModelCommand(app);
  CLI11_PARSE(app, argc, argv);
  const absl::Status status = command.run();
  if (!status.ok()) {
    std::fprintf(stderr, "make-model: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
