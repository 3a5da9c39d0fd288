// Registry of the `expertmesh` subcommands. Add a subcommand by declaring its Add*Command here,
// defining it in its own <name>_command.cc and listing it in commands.cc.
#ifndef EXPERTMESH_TOOLS_CLI_COMMANDS_H_
#define EXPERTMESH_TOOLS_CLI_COMMANDS_H_

#include <vector>

#include "tools/cli/command.h"

namespace expertmesh::cli {

Command AddMakeModelCommand(CLI::App& parent);
Command AddInspectCommand(CLI::App& parent);
Command AddServeCommand(CLI::App& parent);
Command AddGenerateCommand(CLI::App& parent);
Command AddBenchCommand(CLI::App& parent);

// Adds every subcommand to `parent`, in the order `--help` lists them.
std::vector<Command> AddAllCommands(CLI::App& parent);

}  // namespace expertmesh::cli

#endif  // EXPERTMESH_TOOLS_CLI_COMMANDS_H_
