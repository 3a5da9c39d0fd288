// GroupSupervisor: one worker group of `expertmesh serve`, kept running. It starts the group's
// ranks (rank 0 first; once it prints its rendezvous port, the others), and when any rank
// exits unasked it stops the group's other ranks too (a group's collectives are broken once
// one rank is gone, so the survivors cannot serve) and starts the whole group again after a
// RestartBackoff delay. Rank 0 listens on the same port again, so routers find the group at
// the address they already know. The other groups and the router are never touched.
//
// The first start is not retried: a group that never served has a configuration problem (a
// bad flag, a model that does not load) that a restart would only repeat, so it is reported
// through on_first_start and the supervisor gives up.
//
// Thread safety: all methods may be called from any thread. The callbacks in the options run
// on the supervisor's thread and on the children's reader threads.
#ifndef EXPERTMESH_TOOLS_CLI_GROUP_SUPERVISOR_H_
#define EXPERTMESH_TOOLS_CLI_GROUP_SUPERVISOR_H_

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
#include "tools/cli/child_process.h"
#include "tools/cli/restart_backoff.h"

namespace expertmesh::cli {

struct GroupSupervisorOptions {
  int group = 0;  // index; names the processes "g<group>r<rank>" ("worker<group>" alone)
  int world = 1;  // ranks in the group
  // The command line of `rank`. Rank 0 gets the Worker API port to listen on in `port` (0 on
  // the first start: any free port; afterwards the port it had). The other ranks get rank 0's
  // rendezvous port in `rendezvous_port`.
  std::function<std::vector<std::string>(int rank, int rendezvous_port, int port)> argv;
  RestartBackoffOptions backoff;
  // A start that does not serve within this is a failure (the first: fatal; later: restarted).
  absl::Duration ready_timeout = absl::Seconds(300);
  // A broken group's ranks get SIGTERM, then SIGKILL after this. There is nothing to drain
  // (the group cannot run a step), but a rank may still release what it holds.
  absl::Duration teardown_grace = absl::Seconds(3);
  // On RequestStop: SIGTERM (rank 0 drains, then stops the others), SIGKILL after this.
  absl::Duration stop_grace = absl::Seconds(15);
  // Prints one line: a child's (prefix "[g1r0]") or the supervisor's ("expertmesh serve:").
  std::function<void(const std::string& prefix, const std::string& line, bool is_stderr)> print;
  // Called once: with rank 0's "host:port" when the group first serves, or with why its first
  // start failed (the supervisor then stops).
  std::function<void(const absl::StatusOr<std::string>& address)> on_first_start;
};

class GroupSupervisor {
 public:
  // REQUIRES: options.world >= 1, argv/print/on_first_start set, options.backoff valid.
  explicit GroupSupervisor(GroupSupervisorOptions options);
  // RequestStop() and Wait().
  ~GroupSupervisor();

  // Starts the group and supervises it on a thread of its own. Call once.
  void Start();
  // Stops supervising: no more restarts; the running ranks get SIGTERM (SIGKILL after
  // stop_grace). Returns at once; Wait() waits for the ranks to exit.
  void RequestStop();
  void Wait();

  // Restarts so far (starts after the first).
  int restarts() const;
  // Process ids of the ranks of the current start, by rank (0 for one not started); for tests.
  std::vector<pid_t> RankPids() const;

 private:
  void Run();
  // One start of the group at `started` (the previous one failed at `failed_at`): spawns the
  // ranks, waits until it serves and then until a rank exits or a stop is asked, and stops the
  // ranks. Returns why the group ended: UNAVAILABLE with the failure, or CANCELLED when asked
  // to stop.
  absl::Status RunOnce(absl::Time started, absl::Time failed_at);
  // Waits for `done`, a failure or a stop, up to `deadline`; false on timeout.
  template <typename Done>
  bool Await(absl::Time deadline, Done done);
  // Starts `rank`; false (with failure_ set) when it could not be started.
  bool Spawn(int rank, std::vector<std::string> argv);
  std::string RankName(int rank) const;
  void Say(const std::string& line, bool is_stderr);

  const GroupSupervisorOptions o_;
  std::thread thread_;

  // Only the supervisor thread uses these.
  RestartBackoff backoff_;
  bool served_ = false;  // the group has served once
  int port_ = 0;         // rank 0's Worker API port once it served

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int restarts_ ABSL_GUARDED_BY(mu_) = 0;
  int start_ ABSL_GUARDED_BY(mu_) = 0;  // which start the current ranks belong to
  // The current start's ranks (by rank; null before spawned) and what they reported.
  std::vector<std::unique_ptr<ChildProcess>> ranks_ ABSL_GUARDED_BY(mu_);
  int rendezvous_port_ ABSL_GUARDED_BY(mu_) = 0;
  std::string address_ ABSL_GUARDED_BY(mu_);
  std::string failure_ ABSL_GUARDED_BY(mu_);  // the first rank that ended this start, and how
};

}  // namespace expertmesh::cli

#endif  // EXPERTMESH_TOOLS_CLI_GROUP_SUPERVISOR_H_
