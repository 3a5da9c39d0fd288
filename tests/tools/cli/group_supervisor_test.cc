// GroupSupervisor with stand-in ranks (/bin/sh scripts that print the worker's readiness lines
// and sleep): a killed rank takes its whole group down and the group comes back on the same
// port after the backoff while another group is left alone; restarts that keep failing wait
// longer each time; a group that never served is reported, not restarted; a stop ends every
// rank, SIGKILLing one that ignores SIGTERM.
#include "tools/cli/group_supervisor.h"

#include <signal.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace expertmesh::cli {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;

constexpr int kFirstPort = 40001;      // what a stand-in leader "picks" for --port 0
constexpr int kRendezvousPort = 4242;  // what a stand-in leader prints as its rendezvous
constexpr absl::Duration kWait = absl::Seconds(20);

std::vector<std::string> Sh(const std::string& script) { return {"/bin/sh", "-c", script}; }

// A healthy stand-in for rank 0 of a group of `world` listening on `port` (0: kFirstPort).
std::string Leader(int world, int port) {
  std::string script;
  if (world > 1) {
    script += absl::StrCat("echo 'expertmesh-worker: rendezvous listening on port ",
                           kRendezvousPort, "'; ");
  }
  return script + absl::StrCat("echo 'expertmesh-worker: listening on 127.0.0.1:",
                               port == 0 ? kFirstPort : port, "'; exec sleep 600");
}

// What the supervisor printed, and the command lines it asked for, with waits on both.
class Recorder {
 public:
  void Print(const std::string& prefix, const std::string& line) {
    absl::MutexLock lock(&mu_);
    lines_.push_back(absl::StrCat(prefix, " ", line));
  }
  void Started(const absl::StatusOr<std::string>& address) {
    absl::MutexLock lock(&mu_);
    first_start_ = address;
  }
  // Records a call of the argv callback: (rank, rendezvous port, port).
  void Asked(int rank, int rendezvous, int port) {
    absl::MutexLock lock(&mu_);
    asked_.push_back({rank, rendezvous, port});
  }
  // Waits until a line has `text`; returns whether one did.
  bool WaitForLine(const std::string& text, int count = 1) {
    absl::MutexLock lock(&mu_);
    auto seen = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return CountLocked(text) >= count; };
    return mu_.AwaitWithTimeout(absl::Condition(&seen), kWait);
  }
  int Count(const std::string& text) {
    absl::MutexLock lock(&mu_);
    return CountLocked(text);
  }
  absl::StatusOr<std::string> WaitForFirstStart() {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return first_start_.has_value(); };
    if (!mu_.AwaitWithTimeout(absl::Condition(&done), kWait)) {
      return absl::DeadlineExceededError("no first start");
    }
    return *first_start_;
  }
  std::vector<std::vector<int>> asked() {
    absl::MutexLock lock(&mu_);
    return asked_;
  }
  std::vector<std::string> lines() {
    absl::MutexLock lock(&mu_);
    return lines_;
  }

 private:
  int CountLocked(const std::string& text) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    int n = 0;
    for (const std::string& l : lines_) n += l.find(text) != std::string::npos ? 1 : 0;
    return n;
  }

  absl::Mutex mu_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::StatusOr<std::string>> first_start_ ABSL_GUARDED_BY(mu_);
  std::vector<std::vector<int>> asked_ ABSL_GUARDED_BY(mu_);
};

using Script = std::function<std::string(int rank, int port, int start)>;

// A supervisor over stand-in ranks: `script` gives each rank's shell script for the start'th
// start of rank 0 (0 = the first start).
std::unique_ptr<GroupSupervisor> Supervise(int group, int world, Recorder* rec, Script script,
                                           absl::Duration initial_delay = absl::Milliseconds(20),
                                           absl::Duration max_delay = absl::Milliseconds(80)) {
  GroupSupervisorOptions o;
  o.group = group;
  o.world = world;
  auto leader_starts = std::make_shared<std::atomic<int>>(0);
  o.argv = [rec, script, leader_starts](int rank, int rendezvous, int port) {
    rec->Asked(rank, rendezvous, port);
    const int start = rank == 0 ? leader_starts->fetch_add(1) : leader_starts->load() - 1;
    return Sh(script(rank, port, start));
  };
  o.backoff = {.initial_delay = initial_delay, .max_delay = max_delay, .reset_after = kWait};
  o.ready_timeout = kWait;
  o.teardown_grace = absl::Milliseconds(500);
  o.stop_grace = absl::Milliseconds(500);
  o.print = [rec](const std::string& prefix, const std::string& line, bool) {
    rec->Print(prefix, line);
  };
  o.on_first_start = [rec](const absl::StatusOr<std::string>& a) { rec->Started(a); };
  auto supervisor = std::make_unique<GroupSupervisor>(std::move(o));
  supervisor->Start();
  return supervisor;
}

bool Alive(pid_t pid) { return pid > 0 && kill(pid, 0) == 0; }

// Waits until the supervisor's ranks are all running and differ from `old` (a restart).
std::vector<pid_t> WaitForNewRanks(const GroupSupervisor& s, const std::vector<pid_t>& old) {
  const absl::Time deadline = absl::Now() + kWait;
  while (absl::Now() < deadline) {
    std::vector<pid_t> pids = s.RankPids();
    bool fresh = true;
    for (size_t r = 0; r < pids.size(); ++r) fresh = fresh && pids[r] != 0 && pids[r] != old[r];
    if (fresh) return pids;
    absl::SleepFor(absl::Milliseconds(5));  // polling a pid table: nothing to wait on
  }
  return s.RankPids();
}

Script HealthyGroup(int world) {
  return [world](int rank, int port, int) {
    return rank == 0 ? Leader(world, port) : std::string("exec sleep 600");
  };
}

TEST(GroupSupervisorTest, AKilledRankRestartsItsGroupOnlyOnTheSamePort) {
  Recorder a, b;
  auto group_a = Supervise(0, 2, &a, HealthyGroup(2));
  auto group_b = Supervise(1, 2, &b, HealthyGroup(2));
  ASSERT_EQ(a.WaitForFirstStart().value_or("none"), absl::StrCat("127.0.0.1:", kFirstPort));
  ASSERT_EQ(b.WaitForFirstStart().value_or("none"), absl::StrCat("127.0.0.1:", kFirstPort));
  ASSERT_TRUE(b.WaitForLine("[g1r0] expertmesh-worker: listening"));
  const std::vector<pid_t> a_pids = group_a->RankPids();
  std::vector<pid_t> b_pids = group_b->RankPids();
  ASSERT_TRUE(Alive(b_pids[0]) && Alive(b_pids[1]));

  ASSERT_EQ(kill(b_pids[1], SIGKILL), 0);
  ASSERT_TRUE(b.WaitForLine("serving again at 127.0.0.1:40001"));
  EXPECT_EQ(b.Count("group 1: rank 1 (g1r1) killed by signal 9; stopping the group's other ranks"),
            1);
  EXPECT_EQ(b.Count("group 1: restarting the group in 20ms (restart 1;"), 1);
  const std::vector<pid_t> b_new = WaitForNewRanks(*group_b, b_pids);
  EXPECT_FALSE(Alive(b_pids[0])) << "the surviving rank 0 of the broken group was not stopped";
  EXPECT_TRUE(Alive(b_new[0]) && Alive(b_new[1]));
  EXPECT_EQ(group_b->restarts(), 1);
  // Rank 0 came back on the port it had; rank 1 joined its rendezvous.
  const std::vector<std::vector<int>> expected = {
      {0, 0, 0}, {1, kRendezvousPort, 0}, {0, 0, kFirstPort}, {1, kRendezvousPort, 0}};
  EXPECT_EQ(b.asked(), expected);

  // The other group was never touched.
  EXPECT_EQ(group_a->RankPids(), a_pids);
  EXPECT_TRUE(Alive(a_pids[0]) && Alive(a_pids[1]));
  EXPECT_EQ(group_a->restarts(), 0);
  EXPECT_EQ(a.Count("restarting"), 0);

  // A second failure: the leader this time; the delay has doubled.
  ASSERT_EQ(kill(b_new[0], SIGTERM), 0);
  ASSERT_TRUE(b.WaitForLine("serving again at 127.0.0.1:40001", 2));
  EXPECT_EQ(b.Count("group 1: rank 0 (g1r0) killed by signal 15; stopping"), 1);
  EXPECT_EQ(b.Count("group 1: restarting the group in 40ms (restart 2;"), 1);
  EXPECT_FALSE(Alive(b_new[1]));
}

TEST(GroupSupervisorTest, RestartsThatKeepFailingWaitLongerUpToTheCap) {
  Recorder rec;
  // Serves on the first start; every later start of rank 0 exits at once with status 3.
  auto group = Supervise(0, 1, &rec, [](int, int port, int start) {
    return start == 0 ? Leader(1, port) : std::string("echo broken >&2; exit 3");
  });
  ASSERT_TRUE(rec.WaitForFirstStart().ok());
  ASSERT_EQ(kill(group->RankPids()[0], SIGKILL), 0);
  ASSERT_TRUE(rec.WaitForLine("restarting the group in", 5));
  group->RequestStop();
  group->Wait();
  std::vector<std::string> delays;
  for (const std::string& l : rec.lines()) {
    const size_t at = l.find("restarting the group in ");
    if (at != std::string::npos)
      delays.push_back(l.substr(at + 24, l.find(' ', at + 24) - at - 24));
  }
  ASSERT_GE(delays.size(), 5u);
  EXPECT_EQ(std::vector<std::string>(delays.begin(), delays.begin() + 5),
            (std::vector<std::string>{"20ms", "40ms", "80ms", "80ms", "80ms"}));
  EXPECT_EQ(rec.Count("group 0: rank 0 (worker0) killed by signal 9;"), 1);
  EXPECT_GE(rec.Count("group 0: rank 0 (worker0) exited with status 3 while starting;"), 4);
  EXPECT_EQ(rec.Count("serving again"), 0);
}

TEST(GroupSupervisorTest, AGroupThatNeverServedIsReportedNotRestarted) {
  Recorder rec;
  // Rank 1 cannot start, so rank 0 waits at its rendezvous and never serves, as a real one.
  auto group = Supervise(2, 2, &rec, [](int rank, int, int) {
    return rank == 0 ? absl::StrCat("echo 'expertmesh-worker: rendezvous listening on port ",
                                    kRendezvousPort, "'; exec sleep 600")
                     : std::string("exit 2");
  });
  const absl::StatusOr<std::string> first = rec.WaitForFirstStart();
  EXPECT_TRUE(absl::IsUnavailable(first.status())) << first.status();
  EXPECT_THAT(first.status().message(), HasSubstr("rank 1 (g2r1) exited with status 2"));
  group->Wait();  // the supervisor gave up by itself
  EXPECT_EQ(group->restarts(), 0);
  EXPECT_EQ(rec.Count("restarting"), 0);
  EXPECT_EQ(group->RankPids(), (std::vector<pid_t>{0, 0}));
}

TEST(GroupSupervisorTest, StopEndsEveryRankEvenOneThatIgnoresSigterm) {
  Recorder rec;
  // Rank 1 ignores SIGTERM, as a real follower does (its leader tells it when to stop).
  auto group = Supervise(0, 2, &rec, [](int rank, int port, int) {
    return rank == 0 ? Leader(2, port)
                     : std::string("trap '' TERM; echo 'ignoring SIGTERM'; exec sleep 600");
  });
  ASSERT_TRUE(rec.WaitForFirstStart().ok());
  ASSERT_TRUE(rec.WaitForLine("[g0r1] ignoring SIGTERM"));
  const std::vector<pid_t> pids = group->RankPids();
  const absl::Time asked = absl::Now();
  group->RequestStop();
  group->Wait();
  const absl::Duration took = absl::Now() - asked;
  EXPECT_FALSE(Alive(pids[0]));
  EXPECT_FALSE(Alive(pids[1]));
  EXPECT_GE(took, absl::Milliseconds(450)) << "rank 1 ignored SIGTERM: it needed SIGKILL";
  EXPECT_LT(took, absl::Seconds(10));
  EXPECT_EQ(rec.Count("restarting"), 0);
  EXPECT_EQ(rec.Count("stopping the group's other ranks"), 0);  // a stop is not a failure
  EXPECT_THAT(rec.lines(), Contains("[g0r0] expertmesh-worker: listening on 127.0.0.1:40001"));
}

}  // namespace
}  // namespace expertmesh::cli
