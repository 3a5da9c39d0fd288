// The `expertmesh` program: one binary, one subcommand per task.
#include <cstdio>
#include <vector>

#include "CLI/CLI.hpp"
#include "common/malloc_policy.h"
#include "tools/cli/command.h"
#include "tools/cli/commands.h"

int main(int argc, char** argv) {
  // As the worker and the router do: large freed blocks (weight loading's transients) go back
  // to the system (common/malloc_policy.h).
  expertmesh::ReturnLargeFreedBlocksToTheSystem();
  CLI::App app{"expertmesh: distributed inference for Mixture-of-Experts language models"};
  app.require_subcommand(1);
  std::vector<expertmesh::cli::Command> commands = expertmesh::cli::AddAllCommands(app);
  CLI11_PARSE(app, argc, argv);
  for (const auto& command : commands) {
    if (command.app->parsed()) {
      absl::Status status = command.run();
      if (!status.ok()) {
        std::fprintf(stderr, "expertmesh %s: %s\n", command.app->get_name().c_str(),
                     status.ToString().c_str());
        return 1;
      }
      return 0;
    }
  }
  return 1;
}
