// Real processes: 2-4 copies of comm_rank_main form a group over loopback through the
// leader's gRPC rendezvous (port 0, reported on the leader's stdout), as workers do. On one host
// the group picks the shared-memory transport by itself; EXPERTMESH_COMM_TRANSPORT=gloo keeps
// Gloo, and both run every test that is about the transport. Every wait is bounded; children
// still running at the deadline are killed and the test fails.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

extern char** environ;

namespace {

constexpr auto kDeadline = std::chrono::seconds(60);
const char* kRankBinary = EXPERTMESH_BINARY_DIR "/bin/comm_rank_main";

struct Child {
  pid_t pid = -1;
  int out_fd = -1;  // the child's stdout
  std::string output;
  int exit_code = -1;
};

// Starts the rank binary with the test's environment minus any group variables, plus `env`.
Child Spawn(const std::map<std::string, std::string>& env) {
  std::vector<std::string> vars;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string var = *e;
    if (var.rfind("EXPERTMESH_", 0) == 0 || var.rfind("LWS_", 0) == 0) continue;
    vars.push_back(var);
  }
  for (const auto& [k, v] : env) vars.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (std::string& v : vars) envp.push_back(v.data());
  envp.push_back(nullptr);
  int pipe_fds[2];
  EXPECT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  std::string path = kRankBinary;
  char* argv[] = {path.data(), nullptr};
  Child child;
  int rc = posix_spawn(&child.pid, path.c_str(), &actions, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  EXPECT_EQ(rc, 0) << "posix_spawn " << path << ": " << std::strerror(rc);
  child.out_fd = pipe_fds[0];
  return child;
}

using Clock = std::chrono::steady_clock;

int MsLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Reads the child's stdout until a whole line starting with `marker` has arrived; returns the
// rest of that line, or nullopt on EOF or deadline.
std::optional<std::string> ReadUntil(Child& child, const std::string& marker,
                                     Clock::time_point deadline) {
  while (true) {
    size_t at = child.output.find(marker);
    if (at != std::string::npos && (at == 0 || child.output[at - 1] == '\n')) {
      size_t end = child.output.find('\n', at);
      if (end != std::string::npos) {
        return child.output.substr(at + marker.size(), end - at - marker.size());
      }
    }
    pollfd p{child.out_fd, POLLIN, 0};
    if (poll(&p, 1, MsLeft(deadline)) <= 0) return std::nullopt;
    char buf[512];
    ssize_t n = read(child.out_fd, buf, sizeof(buf));
    if (n <= 0) return std::nullopt;
    child.output.append(buf, n);
  }
}

// The port in the leader's "PORT <n>" line; -1 on EOF or deadline.
int ReadPort(Child& child, Clock::time_point deadline) {
  std::optional<std::string> port = ReadUntil(child, "PORT ", deadline);
  return port.has_value() ? std::atoi(port->c_str()) : -1;
}

// The shared-memory segment named in a "TRANSPORT shm ..." line, or "".
std::string SegmentName(const std::string& output) {
  size_t at = output.find("segment /expertmesh-");
  if (at == std::string::npos) return "";
  at += std::strlen("segment ");
  return output.substr(at, output.find(' ', at) - at);
}

bool InDevShm(const std::string& segment) {
  return access(("/dev/shm" + segment).c_str(), F_OK) == 0;
}

// Waits for every child to exit (collecting their output) until the deadline, then kills the
// rest. Returns false if any had to be killed.
bool WaitAll(std::vector<Child>& children, Clock::time_point deadline) {
  std::vector<int> pidfds;
  for (Child& c : children) pidfds.push_back(static_cast<int>(syscall(SYS_pidfd_open, c.pid, 0)));
  size_t done = 0;
  std::vector<bool> exited(children.size(), false), eof(children.size(), false);
  while (done < children.size()) {
    std::vector<pollfd> fds;
    std::vector<std::pair<size_t, bool>> what;  // (child, is_output)
    for (size_t i = 0; i < children.size(); ++i) {
      if (!eof[i]) {
        fds.push_back({children[i].out_fd, POLLIN, 0});
        what.push_back({i, true});
      }
      if (!exited[i]) {
        fds.push_back({pidfds[i], POLLIN, 0});
        what.push_back({i, false});
      }
    }
    int ready = poll(fds.data(), fds.size(), MsLeft(deadline));
    if (ready <= 0) break;
    for (size_t k = 0; k < fds.size(); ++k) {
      if (fds[k].revents == 0) continue;
      size_t i = what[k].first;
      if (what[k].second) {
        char buf[4096];
        ssize_t n = read(children[i].out_fd, buf, sizeof(buf));
        if (n <= 0) {
          eof[i] = true;
        } else {
          children[i].output.append(buf, n);
        }
      } else {
        int status = 0;
        waitpid(children[i].pid, &status, 0);
        children[i].exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        exited[i] = true;
      }
    }
    done = 0;
    for (size_t i = 0; i < children.size(); ++i) done += exited[i] && eof[i];
  }
  bool all = true;
  for (size_t i = 0; i < children.size(); ++i) {
    if (!exited[i]) {
      all = false;
      kill(children[i].pid, SIGKILL);
      waitpid(children[i].pid, nullptr, 0);
    }
    close(children[i].out_fd);
    close(pidfds[i]);
  }
  return all;
}

std::string Describe(const std::vector<Child>& children) {
  std::string s;
  for (size_t i = 0; i < children.size(); ++i) {
    s += "--- rank " + std::to_string(i) + " exit " + std::to_string(children[i].exit_code) + "\n" +
         children[i].output;
  }
  return s;
}

// Starts a group: the leader from EXPERTMESH_* with port 0, the others from EXPERTMESH_* or,
// with `lws`, from LeaderWorkerSet variables. `extra[r]` adds variables for rank r.
std::vector<Child> StartGroup(int world, bool lws,
                              std::map<int, std::map<std::string, std::string>> extra,
                              Clock::time_point deadline) {
  std::vector<Child> children;
  std::map<std::string, std::string> leader_env = {{"EXPERTMESH_RANK", "0"},
                                                   {"EXPERTMESH_WORLD_SIZE", std::to_string(world)},
                                                   {"EXPERTMESH_LEADER", "127.0.0.1:0"}};
  leader_env.insert(extra[0].begin(), extra[0].end());
  children.push_back(Spawn(leader_env));
  int port = ReadPort(children[0], deadline);
  EXPECT_GT(port, 0) << "leader did not report its port:\n" << children[0].output;
  for (int r = 1; r < world; ++r) {
    std::map<std::string, std::string> env;
    if (lws) {
      env = {{"LWS_LEADER_ADDRESS", "127.0.0.1"},
             {"EXPERTMESH_LEADER_PORT", std::to_string(port)},
             {"LWS_GROUP_SIZE", std::to_string(world)},
             {"LWS_WORKER_INDEX", std::to_string(r)},
             {"EXPERTMESH_HOST", "127.0.0.1"}};
    } else {
      env = {{"EXPERTMESH_RANK", std::to_string(r)},
             {"EXPERTMESH_WORLD_SIZE", std::to_string(world)},
             {"EXPERTMESH_LEADER", "127.0.0.1:" + std::to_string(port)}};
    }
    env.insert(extra[r].begin(), extra[r].end());
    children.push_back(Spawn(env));
  }
  return children;
}

// "" lets the group choose (shared memory on this host); "gloo" forces Gloo.
std::map<int, std::map<std::string, std::string>> TransportEnv(int world,
                                                               const std::string& transport) {
  std::map<int, std::map<std::string, std::string>> extra;
  for (int r = 0; r < world; ++r) {
    if (!transport.empty()) extra[r]["EXPERTMESH_COMM_TRANSPORT"] = transport;
  }
  return extra;
}

std::string ExpectedTransport(const std::string& transport) {
  return transport.empty() ? "shm" : transport;
}

std::string TransportParamName(const std::string& transport) {
  return transport.empty() ? "auto" : transport;
}

class MultiProcessTest : public ::testing::TestWithParam<std::tuple<int, std::string>> {};

TEST_P(MultiProcessTest, GroupRunsEveryCollective) {
  auto [world, transport] = GetParam();
  auto deadline = Clock::now() + kDeadline;
  std::vector<Child> children =
      StartGroup(world, /*lws=*/false, TransportEnv(world, transport), deadline);
  ASSERT_TRUE(WaitAll(children, deadline)) << "ranks still running at the deadline\n"
                                           << Describe(children);
  for (const Child& c : children) {
    EXPECT_EQ(c.exit_code, 0) << Describe(children);
    EXPECT_THAT(c.output, ::testing::HasSubstr("TRANSPORT " + ExpectedTransport(transport) +
                                               " local_ranks " + std::to_string(world)))
        << Describe(children);
  }
  // The segment was unlinked as soon as every rank had attached: nothing is left behind.
  if (ExpectedTransport(transport) == "shm") {
    std::string segment = SegmentName(children[0].output);
    ASSERT_FALSE(segment.empty()) << Describe(children);
    EXPECT_FALSE(InDevShm(segment)) << segment;
  }
}

INSTANTIATE_TEST_SUITE_P(Worlds, MultiProcessTest,
                         ::testing::Combine(::testing::Values(2, 3, 4),
                                            ::testing::Values(std::string(), std::string("gloo"))),
                         [](const auto& info) {
                           return TransportParamName(std::get<1>(info.param)) + "_" +
                                  std::to_string(std::get<0>(info.param)) + "ranks";
                         });

TEST(MultiProcessLwsTest, RanksFindTheLeaderFromLeaderWorkerSetVariables) {
  auto deadline = Clock::now() + kDeadline;
  std::vector<Child> children = StartGroup(3, /*lws=*/true, {}, deadline);
  ASSERT_TRUE(WaitAll(children, deadline)) << Describe(children);
  for (const Child& c : children) EXPECT_EQ(c.exit_code, 0) << Describe(children);
}

// A rank exits while its peers are inside a collective: they report a peer failure within
// the communicator timeout and exit cleanly (code 4), no hang and no crash.
void ExpectPeersFail(int world, int dying_rank, const std::string& transport) {
  auto deadline = Clock::now() + kDeadline;
  std::map<int, std::map<std::string, std::string>> extra = TransportEnv(world, transport);
  for (int r = 0; r < world; ++r) extra[r]["EXPERTMESH_TEST_TIMEOUT_MS"] = "3000";
  extra[dying_rank]["EXPERTMESH_TEST_EXIT_AT"] = "5";
  auto start = Clock::now();
  std::vector<Child> children = StartGroup(world, /*lws=*/false, extra, deadline);
  ASSERT_TRUE(WaitAll(children, deadline)) << Describe(children);
  auto elapsed = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - start);
  EXPECT_LT(elapsed.count(), 30) << Describe(children);
  for (int r = 0; r < world; ++r) {
    EXPECT_EQ(children[r].exit_code, r == dying_rank ? 3 : 4) << Describe(children);
    if (r != dying_rank) {
      EXPECT_THAT(children[r].output, ::testing::HasSubstr("COMM_ERROR")) << Describe(children);
    }
  }
}

class MultiProcessFaultTest : public ::testing::TestWithParam<std::string> {};

TEST_P(MultiProcessFaultTest, WorkerExitMidCollective) { ExpectPeersFail(3, 2, GetParam()); }
TEST_P(MultiProcessFaultTest, LeaderExitMidCollective) { ExpectPeersFail(4, 0, GetParam()); }

// SIGKILL, the way an out-of-memory kill ends a rank: its peers, waiting for it in the next
// collective, fail with UNAVAILABLE long before the communicator timeout (20 s here).
TEST_P(MultiProcessFaultTest, KilledRankFailsTheOthersWithUnavailableQuickly) {
  const int world = 3, victim = 1;
  auto deadline = Clock::now() + kDeadline;
  std::map<int, std::map<std::string, std::string>> extra = TransportEnv(world, GetParam());
  for (int r = 0; r < world; ++r) extra[r]["EXPERTMESH_TEST_TIMEOUT_MS"] = "20000";
  extra[victim]["EXPERTMESH_TEST_HANG_AT"] = "7";
  std::vector<Child> children = StartGroup(world, /*lws=*/false, extra, deadline);
  ASSERT_TRUE(ReadUntil(children[victim], "HANGING", deadline).has_value()) << Describe(children);
  ASSERT_EQ(kill(children[victim].pid, SIGKILL), 0);
  auto killed_at = Clock::now();
  for (int r = 0; r < world; ++r) {
    if (r == victim) continue;
    ASSERT_TRUE(ReadUntil(children[r], "COMM_ERROR", deadline)) << Describe(children);
  }
  auto reaction = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - killed_at);
  ASSERT_TRUE(WaitAll(children, deadline)) << Describe(children);
  EXPECT_LT(reaction.count(), 5000) << Describe(children);
  for (int r = 0; r < world; ++r) {
    if (r == victim) {
      EXPECT_EQ(children[r].exit_code, 128 + SIGKILL);
      continue;
    }
    EXPECT_EQ(children[r].exit_code, 4) << Describe(children);
    EXPECT_THAT(children[r].output, ::testing::HasSubstr("UNAVAILABLE")) << Describe(children);
  }
}

// A rank that lives but stops taking part: its peers give up after the timeout (2 s) with
// DEADLINE_EXCEEDED.
TEST_P(MultiProcessFaultTest, HungRankGivesDeadlineExceeded) {
  const int world = 3, victim = 2;
  auto deadline = Clock::now() + kDeadline;
  std::map<int, std::map<std::string, std::string>> extra = TransportEnv(world, GetParam());
  for (int r = 0; r < world; ++r) extra[r]["EXPERTMESH_TEST_TIMEOUT_MS"] = "2000";
  extra[victim]["EXPERTMESH_TEST_HANG_AT"] = "4";
  std::vector<Child> children = StartGroup(world, /*lws=*/false, extra, deadline);
  ASSERT_TRUE(ReadUntil(children[victim], "HANGING", deadline).has_value()) << Describe(children);
  auto hung_at = Clock::now();
  for (int r = 0; r < world; ++r) {
    if (r == victim) continue;
    ASSERT_TRUE(ReadUntil(children[r], "COMM_ERROR", deadline)) << Describe(children);
  }
  auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - hung_at);
  kill(children[victim].pid, SIGKILL);
  ASSERT_TRUE(WaitAll(children, deadline)) << Describe(children);
  EXPECT_GE(waited.count(), 1500) << Describe(children);  // not before the timeout
  EXPECT_LT(waited.count(), 2000 + 8000) << Describe(children);
  for (int r = 0; r < world; ++r) {
    if (r == victim) continue;
    EXPECT_EQ(children[r].exit_code, 4) << Describe(children);
    EXPECT_THAT(children[r].output, ::testing::HasSubstr("DEADLINE_EXCEEDED"))
        << Describe(children);
  }
}

INSTANTIATE_TEST_SUITE_P(Transports, MultiProcessFaultTest,
                         ::testing::Values(std::string(), std::string("gloo")),
                         [](const auto& info) { return TransportParamName(info.param); });

// The leader, which created the segment, is killed once the group runs: the name was unlinked
// when every rank attached, so /dev/shm holds nothing of the group (the memory goes with the
// last mapping), and the other rank fails with UNAVAILABLE.
TEST(MultiProcessShmTest, KilledLeaderLeavesNothingInDevShm) {
  auto deadline = Clock::now() + kDeadline;
  std::map<int, std::map<std::string, std::string>> extra = TransportEnv(2, "");
  extra[0]["EXPERTMESH_TEST_HANG_AT"] = "1";
  std::vector<Child> children = StartGroup(2, /*lws=*/false, extra, deadline);
  ASSERT_TRUE(ReadUntil(children[0], "HANGING", deadline).has_value()) << Describe(children);
  const std::string segment = SegmentName(children[0].output);
  ASSERT_FALSE(segment.empty()) << Describe(children);
  ASSERT_EQ(kill(children[0].pid, SIGKILL), 0);
  ASSERT_TRUE(WaitAll(children, deadline)) << Describe(children);
  EXPECT_FALSE(InDevShm(segment)) << segment;
  EXPECT_EQ(children[1].exit_code, 4) << Describe(children);
  EXPECT_THAT(children[1].output, ::testing::HasSubstr("UNAVAILABLE")) << Describe(children);
}

}  // namespace
