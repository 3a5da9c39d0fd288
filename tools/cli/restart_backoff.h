// RestartBackoff: how long `expertmesh serve` waits before it starts a failed worker group
// again. The first restart waits `initial_delay`; each failure that follows a short life doubles
// the wait, up to `max_delay`, so a group that crashes at once (a bad GPU, a port taken) is not
// restarted in a tight loop that starves the healthy groups of CPU. A group that served for
// `reset_after` before it failed starts again from `initial_delay`: its failure is a new
// incident, not part of a crash loop.
//
// Pure arithmetic over the times it is given (no clock), so tests script it step by step.
// Thread safety: none; one supervisor thread owns each instance.
#ifndef EXPERTMESH_TOOLS_CLI_RESTART_BACKOFF_H_
#define EXPERTMESH_TOOLS_CLI_RESTART_BACKOFF_H_

#include <optional>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace expertmesh::cli {

struct RestartBackoffOptions {
  absl::Duration initial_delay = absl::Seconds(1);
  absl::Duration max_delay = absl::Seconds(30);
  absl::Duration reset_after = absl::Seconds(60);

  // INVALID_ARGUMENT unless 0 < initial_delay <= max_delay and reset_after >= 0.
  absl::Status Validate() const;
};

class RestartBackoff {
 public:
  // REQUIRES: options.Validate() is OK.
  explicit RestartBackoff(RestartBackoffOptions options = {});

  // The group is serving since `at` (its leader listens).
  void OnReady(absl::Time at);
  // The group failed at `at`. Returns how long to wait before starting it again.
  absl::Duration OnFailure(absl::Time at);

  // Failures since the last reset (the first start, or a life of at least reset_after).
  int consecutive_failures() const { return consecutive_failures_; }

 private:
  RestartBackoffOptions options_;
  absl::Duration next_delay_;
  int consecutive_failures_ = 0;
  std::optional<absl::Time> ready_since_;  // set while the current start is serving
};

}  // namespace expertmesh::cli

#endif  // EXPERTMESH_TOOLS_CLI_RESTART_BACKOFF_H_
