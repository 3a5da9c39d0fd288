// Real processes: 2-4 copies of comm_rank_main form a group over loopback through the
// leader's gRPC rendezvous (port 0, reported on the leader's stdout), as workers do. Every wait
// is bounded; children still running at the deadline are killed and the test fails.
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

// Reads the child's stdout until a line starting with "PORT " appears; -1 on EOF or deadline.
int ReadPort(Child& child, Clock::time_point deadline) {
  while (true) {
    size_t at = child.output.find("PORT ");
    if (at != std::string::npos && child.output.find('\n', at) != std::string::npos) {
      return std::atoi(child.output.c_str() + at + 5);
    }
    pollfd p{child.out_fd, POLLIN, 0};
    if (poll(&p, 1, MsLeft(deadline)) <= 0) return -1;
    char buf[512];
    ssize_t n = read(child.out_fd, buf, sizeof(buf));
    if (n <= 0) return -1;
    child.output.append(buf, n);
  }
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

class MultiProcessTest : public ::testing::TestWithParam<int> {};

TEST_P(MultiProcessTest, GroupRunsEveryCollective) {
  int world = GetParam();
  auto deadline = Clock::now() + kDeadline;
  std::vector<Child> children = StartGroup(world, /*lws=*/false, {}, deadline);
  ASSERT_TRUE(WaitAll(children, deadline)) << "ranks still running at the deadline\n"
                                           << Describe(children);
  for (const Child& c : children) EXPECT_EQ(c.exit_code, 0) << Describe(children);
}

INSTANTIATE_TEST_SUITE_P(Worlds, MultiProcessTest, ::testing::Values(2, 3, 4));

TEST(MultiProcessLwsTest, RanksFindTheLeaderFromLeaderWorkerSetVariables) {
  auto deadline = Clock::now() + kDeadline;
  std::vector<Child> children = StartGroup(3, /*lws=*/true, {}, deadline);
  ASSERT_TRUE(WaitAll(children, deadline)) << Describe(children);
  for (const Child& c : children) EXPECT_EQ(c.exit_code, 0) << Describe(children);
}

// A rank exits while its peers are inside a collective: they report a peer failure within
// the communicator timeout and exit cleanly (code 4), no hang and no crash.
void ExpectPeersFail(int world, int dying_rank) {
  auto deadline = Clock::now() + kDeadline;
  std::map<int, std::map<std::string, std::string>> extra;
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

TEST(MultiProcessFaultTest, WorkerExitMidCollective) { ExpectPeersFail(3, 2); }
TEST(MultiProcessFaultTest, LeaderExitMidCollective) { ExpectPeersFail(4, 0); }

}  // namespace
