// A subcommand of the `expertmesh` program. Each subcommand lives in its own file, defines its
// flags on a CLI11 sub-app and returns a runner that main() calls when that sub-app was chosen.
#ifndef EXPERTMESH_TOOLS_CLI_COMMAND_H_
#define EXPERTMESH_TOOLS_CLI_COMMAND_H_

#include <functional>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"

namespace expertmesh::cli {

struct Command {
  CLI::App* app;                      // the sub-app, owned by the parent CLI::App
  std::function<absl::Status()> run;  // called after parsing when `app` was selected
};

}  // namespace expertmesh::cli

#endif  // EXPERTMESH_TOOLS_CLI_COMMAND_H_
