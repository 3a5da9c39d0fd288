#include "tools/cli/group_supervisor.h"

#include <signal.h>

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace expertmesh::cli {
namespace {

constexpr char kSelf[] = "expertmesh serve:";

std::string AfterMarker(const std::string& line, const std::string& marker) {
  const size_t at = line.find(marker);
  return at == std::string::npos ? "" : line.substr(at + marker.size());
}

int PortOf(const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port)) return 0;
  return port;
}

// SIGTERM to every child, SIGKILL to those still running after `grace`; waits for all.
void StopAll(const std::vector<ChildProcess*>& children, absl::Duration grace) {
  for (ChildProcess* c : children) c->Signal(SIGTERM);
  const absl::Time deadline = absl::Now() + grace;
  for (ChildProcess* c : children) {
    if (c->WaitFor(std::max(deadline - absl::Now(), absl::ZeroDuration())).has_value()) continue;
    c->Signal(SIGKILL);
    // Only a process in an uninterruptible sleep outlives SIGKILL for long; ~ChildProcess
    // waits for it in any case.
    c->WaitFor(absl::Seconds(10));
  }
}

}  // namespace

GroupSupervisor::GroupSupervisor(GroupSupervisorOptions options)
    : o_(std::move(options)), backoff_(o_.backoff) {}

GroupSupervisor::~GroupSupervisor() {
  RequestStop();
  Wait();
}

void GroupSupervisor::Start() {
  thread_ = std::thread([this] { Run(); });
}

void GroupSupervisor::RequestStop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
}

void GroupSupervisor::Wait() {
  if (thread_.joinable()) thread_.join();
}

int GroupSupervisor::restarts() const {
  absl::MutexLock lock(&mu_);
  return restarts_;
}

std::vector<pid_t> GroupSupervisor::RankPids() const {
  absl::MutexLock lock(&mu_);
  std::vector<pid_t> pids(o_.world, 0);
  for (size_t r = 0; r < ranks_.size(); ++r) {
    if (ranks_[r]) pids[r] = ranks_[r]->pid();
  }
  return pids;
}

std::string GroupSupervisor::RankName(int rank) const {
  return o_.world > 1 ? absl::StrCat("g", o_.group, "r", rank) : absl::StrCat("worker", o_.group);
}

void GroupSupervisor::Say(const std::string& line, bool is_stderr) {
  o_.print(kSelf, absl::StrCat("group ", o_.group, ": ", line), is_stderr);
}

template <typename Done>
bool GroupSupervisor::Await(absl::Time deadline, Done done) {
  absl::MutexLock lock(&mu_);
  auto woken = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return done() || !failure_.empty() || stopping_;
  };
  return mu_.AwaitWithDeadline(absl::Condition(&woken), deadline);
}

void GroupSupervisor::Run() {
  absl::Time failed_at;
  while (true) {
    const absl::Time started = absl::Now();
    const absl::Status ended = RunOnce(started, failed_at);
    failed_at = absl::Now();
    bool stopping = false;
    {
      absl::MutexLock lock(&mu_);
      stopping = stopping_;
    }
    if (!served_) {
      o_.on_first_start(stopping ? absl::CancelledError("stopped while starting") : ended);
      return;
    }
    if (stopping) return;
    const absl::Duration delay = backoff_.OnFailure(failed_at);
    int restart = 0;
    {
      absl::MutexLock lock(&mu_);
      restart = restarts_ + 1;
    }
    Say(absl::StrCat("restarting the group in ", absl::FormatDuration(delay), " (restart ", restart,
                     "; ", backoff_.consecutive_failures(),
                     " failure(s) in a row, the delay doubles up to ",
                     absl::FormatDuration(o_.backoff.max_delay), ")"),
        true);
    absl::MutexLock lock(&mu_);
    auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stop), delay)) return;
    restarts_ = restart;
  }
}

absl::Status GroupSupervisor::RunOnce(absl::Time started, absl::Time failed_at) {
  const absl::Time deadline = started + o_.ready_timeout;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::CancelledError("stopped");
    ++start_;
    ranks_.clear();
    ranks_.resize(o_.world);
    rendezvous_port_ = 0;
    address_.clear();
    failure_.clear();
  }
  bool timed_out = false;
  bool spawned = Spawn(0, o_.argv(0, 0, port_));
  if (spawned && o_.world > 1) {
    timed_out = !Await(
        deadline, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return rendezvous_port_ != 0; });
    int rendezvous = 0;
    {
      absl::MutexLock lock(&mu_);
      if (failure_.empty() && !stopping_) rendezvous = rendezvous_port_;
    }
    for (int r = 1; spawned && rendezvous != 0 && r < o_.world; ++r) {
      spawned = Spawn(r, o_.argv(r, rendezvous, 0));
    }
  }
  if (spawned && !timed_out) {
    timed_out =
        !Await(deadline, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !address_.empty(); });
  }
  std::string address;
  {
    absl::MutexLock lock(&mu_);
    if (timed_out && failure_.empty() && !stopping_) {
      failure_ = absl::StrCat("not serving ", absl::FormatDuration(o_.ready_timeout),
                              " after its start (--ready-timeout-s)");
    }
    if (failure_.empty() && !stopping_) address = address_;
  }
  if (!address.empty()) {
    const absl::Time now = absl::Now();
    backoff_.OnReady(now);
    if (!served_) {
      served_ = true;
      port_ = PortOf(address);
      o_.on_first_start(address);
    } else {
      Say(absl::StrCat("serving again at ", address, ", ",
                       absl::FormatDuration(absl::Trunc(now - failed_at, absl::Milliseconds(1))),
                       " after it failed"),
          false);
    }
    // Until a rank ends or a stop is asked.
    Await(absl::InfiniteFuture(), [] { return false; });
  }

  std::vector<ChildProcess*> running;
  std::string failure;
  {
    absl::MutexLock lock(&mu_);
    failure = failure_;
    for (auto& c : ranks_) {
      if (c) running.push_back(c.get());
    }
  }
  if (!failure.empty()) {
    Say(absl::StrCat(failure, "; stopping the group's other ranks (its collectives are broken)"),
        true);
  }
  StopAll(running, failure.empty() ? o_.stop_grace : o_.teardown_grace);
  std::vector<std::unique_ptr<ChildProcess>> ended;
  {
    absl::MutexLock lock(&mu_);
    ended.swap(ranks_);
  }
  ended.clear();  // joins their threads, outside mu_: their callbacks take it
  if (failure.empty()) return absl::CancelledError("stopped");
  return absl::UnavailableError(failure);
}

bool GroupSupervisor::Spawn(int rank, std::vector<std::string> argv) {
  const std::string name = RankName(rank);
  const std::string prefix = absl::StrCat("[", name, "]");
  int start = 0;
  {
    absl::MutexLock lock(&mu_);
    start = start_;
  }
  auto on_line = [this, prefix, rank, start](const std::string& line, bool is_stderr) {
    o_.print(prefix, line, is_stderr);
    if (is_stderr || rank != 0) return;
    const std::string port = AfterMarker(line, "rendezvous listening on port ");
    const std::string address = AfterMarker(line, "expertmesh-worker: listening on ");
    if (port.empty() && address.empty()) return;
    absl::MutexLock lock(&mu_);
    if (start != start_) return;
    if (!port.empty() && !absl::SimpleAtoi(port, &rendezvous_port_)) rendezvous_port_ = 0;
    if (!address.empty()) address_ = address;
  };
  absl::StatusOr<std::unique_ptr<ChildProcess>> child = ChildProcess::Spawn(argv, on_line);
  if (!child.ok()) {
    absl::MutexLock lock(&mu_);
    if (failure_.empty()) {
      failure_ =
          absl::StrCat("rank ", rank, " (", name, ") did not start: ", child.status().message());
    }
    return false;
  }
  // Not under mu_: OnExit runs the callback at once if the child already exited.
  (*child)->OnExit([this, rank, name, start](int status) {
    absl::MutexLock lock(&mu_);
    if (start != start_ || stopping_ || !failure_.empty()) return;
    failure_ = absl::StrCat("rank ", rank, " (", name, ") ", DescribeWaitStatus(status),
                            address_.empty() ? " while starting" : "");
  });
  absl::MutexLock lock(&mu_);
  ranks_[rank] = std::move(*child);
  return true;
}

}  // namespace expertmesh::cli
