#include "tools/cli/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace expertmesh::cli {

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  return absl::StrCat("wait status ", status);
}

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Spawn(
    const std::vector<std::string>& argv, LineCallback on_line) {
  if (argv.empty()) return absl::InvalidArgumentError("spawn: empty argv");
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0) return absl::InternalError("spawn: pipe failed");
  if (pipe2(err, O_CLOEXEC) != 0) {
    close(out[0]);
    close(out[1]);
    return absl::InternalError("spawn: pipe failed");
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("spawn: fork failed: ", strerror(errno)));
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    setpgid(0, 0);  // Ctrl-C reaches the launcher only; it stops the children in order
    dup2(out[1], STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    execv(args[0], args.data());
    const char* msg = "exec failed: ";
    (void)!write(STDERR_FILENO, msg, strlen(msg));
    (void)!write(STDERR_FILENO, args[0], strlen(args[0]));
    (void)!write(STDERR_FILENO, "\n", 1);
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  std::unique_ptr<ChildProcess> child(new ChildProcess());
  child->pid_ = pid;
  child->on_line_ = std::move(on_line);
  ChildProcess* c = child.get();
  child->out_reader_ = std::thread([c, fd = out[0]] { c->ReadLines(fd, false); });
  child->err_reader_ = std::thread([c, fd = err[0]] { c->ReadLines(fd, true); });
  child->waiter_ = std::thread([c] {
    int status = 0;
    while (waitpid(c->pid_, &status, 0) < 0 && errno == EINTR) {
    }
    std::function<void(int)> callback;
    {
      absl::MutexLock lock(&c->mu_);
      c->status_ = status;
      callback = c->on_exit_;
    }
    if (callback) callback(status);
  });
  return child;
}

ChildProcess::~ChildProcess() {
  if (!ExitStatus().has_value()) Signal(SIGKILL);
  if (waiter_.joinable()) waiter_.join();
  if (out_reader_.joinable()) out_reader_.join();
  if (err_reader_.joinable()) err_reader_.join();
}

void ChildProcess::ReadLines(int fd, bool is_stderr) {
  std::string buffer;
  char chunk[4096];
  while (true) {
    const ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buffer.append(chunk, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t nl; (nl = buffer.find('\n', start)) != std::string::npos; start = nl + 1) {
      if (on_line_) on_line_(buffer.substr(start, nl - start), is_stderr);
    }
    buffer.erase(0, start);
  }
  if (!buffer.empty() && on_line_) on_line_(buffer, is_stderr);
  close(fd);
}

void ChildProcess::Signal(int sig) {
  absl::MutexLock lock(&mu_);
  if (!status_.has_value()) kill(pid_, sig);  // not reaped yet: the pid is still ours
}

std::optional<int> ChildProcess::ExitStatus() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

std::optional<int> ChildProcess::WaitFor(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto exited = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return status_.has_value(); };
  mu_.AwaitWithTimeout(absl::Condition(&exited), timeout);
  return status_;
}

void ChildProcess::OnExit(std::function<void(int)> callback) {
  std::optional<int> status;
  {
    absl::MutexLock lock(&mu_);
    status = status_;
    if (!status.has_value()) on_exit_ = callback;
  }
  if (status.has_value()) callback(*status);  // it exited already
}

}  // namespace expertmesh::cli
