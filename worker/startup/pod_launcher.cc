#include "worker/startup/pod_launcher.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace expertmesh::server {

int RunPodLauncher(int ranks, char** argv, SignalWatcher& signals, double grace_s) {
  std::vector<pid_t> children;
  for (int i = 0; i < ranks; ++i) {
    const pid_t pid = fork();
    if (pid < 0) {
      std::perror("expertmesh-worker: fork");
      for (pid_t c : children) kill(c, SIGKILL);
      return 1;
    }
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      setenv("EXPERTMESH_LOCAL_RANK", std::to_string(i).c_str(), 1);
      setenv("EXPERTMESH_RANKS_PER_POD", std::to_string(ranks).c_str(), 1);
      execv("/proc/self/exe", argv);
      std::perror("expertmesh-worker: exec");
      std::_Exit(127);
    }
    children.push_back(pid);
  }
  std::printf("expertmesh-worker: pod launcher started %d local ranks\n", ranks);
  std::fflush(stdout);
  int result = 0;
  bool forwarded = false;
  absl::Time kill_at = absl::InfiniteFuture();
  size_t running = children.size();
  while (running > 0) {
    int status = 0;
    const pid_t done = waitpid(-1, &status, WNOHANG);
    if (done > 0) {
      --running;
      const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      if (code != 0 && result == 0) {
        result = code;
        std::fprintf(stderr, "expertmesh-worker: a local rank exited with %d; stopping the pod\n",
                     code);
        for (pid_t c : children) kill(c, SIGTERM);
        kill_at = absl::Now() + absl::Seconds(grace_s + 5);
      }
      continue;
    }
    if (!forwarded && signals.first().HasBeenNotified()) {
      forwarded = true;
      for (pid_t c : children) kill(c, signals.signal());
      kill_at = absl::Now() + absl::Seconds(grace_s + 5);
    }
    if (absl::Now() > kill_at) {
      for (pid_t c : children) kill(c, SIGKILL);
      kill_at = absl::InfiniteFuture();
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return result;
}

}  // namespace expertmesh::server
