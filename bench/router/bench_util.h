// Shared pieces of the router benchmarks: child processes whose stdout lines can be waited on,
// per-process CPU time from /proc, an OpenAI SSE streaming client that timestamps the first
// token, percentiles, and a tiny `--key value` flag parser (no CLI11 in benchmarks).
#ifndef EXPERTMESH_BENCH_ROUTER_BENCH_UTIL_H_
#define EXPERTMESH_BENCH_ROUTER_BENCH_UTIL_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "tools/cli/child_process.h"

namespace expertmesh::bench {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

inline double SecondsSince(Clock::time_point t0, Clock::time_point t1) {
  return std::chrono::duration<double>(t1 - t0).count();
}

// The directory of the running executable (build/bin): the other binaries live beside it.
std::string ExecutableDir();
// Path of the running executable (for re-executing itself in a helper mode).
std::string ExecutablePath();

// A child process whose stdout lines are kept; stderr lines are kept too and echoed live
// when they carry a warning or an error (or always with `echo_stderr`).
class Proc {
 public:
  static std::unique_ptr<Proc> Launch(const std::string& name, const std::vector<std::string>& argv,
                                      bool echo_stderr = false);
  // The text after `marker` on the first stdout line that has it, waiting up to `timeout`;
  // empty if none came (or the process exited).
  std::string WaitFor(const std::string& marker, absl::Duration timeout);
  pid_t pid() const { return child_ ? child_->pid() : -1; }
  bool running() const { return child_ && !child_->ExitStatus().has_value(); }
  // SIGTERM, then SIGKILL after `grace`.
  void Stop(absl::Duration grace = absl::Seconds(10));
  // The last stderr lines, for failure messages.
  std::string StderrTail(size_t lines = 20);

 private:
  std::string name_;
  std::unique_ptr<cli::ChildProcess> child_;
  absl::Mutex mu_;
  std::vector<std::string> out_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> err_ ABSL_GUARDED_BY(mu_);
};

// utime + stime of a process (all its threads), in seconds, from /proc/<pid>/stat; -1 on error.
double ProcessCpuSeconds(pid_t pid);
// CPU seconds of this process (all threads) from getrusage.
double SelfCpuSeconds();
// The first three fields of /proc/loadavg ("1.02 0.80 0.55"): benchmarks print it so a reader
// sees whether the machine was busy with something else.
std::string LoadAverage();

// Waits until GET `path` on 127.0.0.1:`port` answers 200 (and `body_check` holds for the body
// when given); false after `timeout`.
bool WaitHttpOk(int port, const std::string& path, absl::Duration timeout,
                bool (*body_check)(const std::string&) = nullptr);

// One streamed /v1/completions call, timed by the client.
struct StreamResult {
  int status = 0;     // HTTP status; -1 when no response
  bool done = false;  // saw data: [DONE]
  std::string error;
  double ttft_s = -1;   // send -> first SSE chunk carrying a choice
  double total_s = -1;  // send -> end of the response
  int64_t chunks = 0;   // SSE chunks carrying a choice
  int64_t prompt_tokens = -1;
  int64_t completion_tokens = -1;
  int64_t cached_tokens = -1;  // usage.prompt_tokens_details.cached_tokens
};

// Streams `body` (stream_options.include_usage should be set) to /v1/completions through
// `client` (keep-alive reused across calls). Only chunks that carry "usage" or "error" are
// parsed as JSON, so the client stays cheap next to the server it measures. A connection that
// fails before any byte arrived is retried (up to 4 times, 10/20/30/40 ms apart): cpp-httplib
// listens with a backlog of 5, so a burst of connects can be refused.
StreamResult StreamCompletion(httplib::Client& client, const std::string& body);

// Percentile (0..100) of `v` by linear interpolation between closest ranks; NaN when empty.
double Percentile(std::vector<double> v, double p);
double Mean(const std::vector<double>& v);

// `--key value` / `--key=value` flags with defaults; unknown keys are an error.
class Flags {
 public:
  Flags(int argc, char** argv, std::map<std::string, std::string> defaults, std::string usage);
  const std::string& Str(const std::string& key) const;
  int64_t Int(const std::string& key) const;
  double Double(const std::string& key) const;

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace expertmesh::bench

#endif  // EXPERTMESH_BENCH_ROUTER_BENCH_UTIL_H_
