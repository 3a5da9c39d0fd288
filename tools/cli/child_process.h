// ChildProcess: a program started by `expertmesh serve` (and the end-to-end tests) with its
// stdout and stderr read line by line on reader threads, and its exit observed by a waiter
// thread. The child gets SIGTERM if this process dies (PR_SET_PDEATHSIG), so nothing is left
// running behind a crashed launcher.
//
// Thread safety: all methods may be called from any thread; `on_line` runs on reader threads.
#ifndef EXPERTMESH_TOOLS_CLI_CHILD_PROCESS_H_
#define EXPERTMESH_TOOLS_CLI_CHILD_PROCESS_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace expertmesh::cli {

// Called with each line (without the newline); `is_stderr` says which stream.
using LineCallback = std::function<void(const std::string& line, bool is_stderr)>;

class ChildProcess {
 public:
  // Starts argv[0] (a path) with argv. INTERNAL when pipes or fork fail; a program that cannot
  // be executed exits with status 127 and says why on its stderr.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Spawn(const std::vector<std::string>& argv,
                                                             LineCallback on_line);
  // Kills (SIGKILL) a child still running and joins the threads.
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  void Signal(int sig);

  // The wait status once the child exited (see waitpid), nullopt while it runs.
  std::optional<int> ExitStatus() const;
  // Waits until the child exited or `timeout` passed; returns ExitStatus().
  std::optional<int> WaitFor(absl::Duration timeout);
  // Runs `callback` when the child exits (on the waiter thread), or at once if it has.
  void OnExit(std::function<void(int status)> callback);

 private:
  ChildProcess() = default;
  void ReadLines(int fd, bool is_stderr);

  pid_t pid_ = -1;
  LineCallback on_line_;
  std::thread out_reader_, err_reader_, waiter_;
  mutable absl::Mutex mu_;
  std::optional<int> status_ ABSL_GUARDED_BY(mu_);
  std::function<void(int)> on_exit_ ABSL_GUARDED_BY(mu_);
};

// "exited with status 3" / "killed by signal 9".
std::string DescribeWaitStatus(int status);

}  // namespace expertmesh::cli

#endif  // EXPERTMESH_TOOLS_CLI_CHILD_PROCESS_H_
