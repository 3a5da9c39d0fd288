#include "tools/cli/commands.h"

namespace expertmesh::cli {

std::vector<Command> AddAllCommands(CLI::App& parent) {
  return {
      AddMakeModelCommand(parent), AddInspectCommand(parent), AddGenerateCommand(parent),
      AddServeCommand(parent),     AddBenchCommand(parent),
  };
}

}  // namespace expertmesh::cli
