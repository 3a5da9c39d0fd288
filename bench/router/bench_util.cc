#include "bench/router/bench_util.h"

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

namespace expertmesh::bench {

std::string ExecutablePath() { return std::filesystem::read_symlink("/proc/self/exe").string(); }

std::string ExecutableDir() {
  return std::filesystem::path(ExecutablePath()).parent_path().string();
}

std::unique_ptr<Proc> Proc::Launch(const std::string& name, const std::vector<std::string>& argv,
                                   bool echo_stderr) {
  auto proc = std::unique_ptr<Proc>(new Proc());
  proc->name_ = name;
  Proc* p = proc.get();
  absl::StatusOr<std::unique_ptr<cli::ChildProcess>> child =
      cli::ChildProcess::Spawn(argv, [p, echo_stderr](const std::string& line, bool is_stderr) {
        absl::MutexLock lock(&p->mu_);
        if (is_stderr) {
          if (echo_stderr || absl::StrContains(line, "[warning]") ||
              absl::StrContains(line, "[error]") || absl::StrContains(line, "[critical]")) {
            std::fprintf(stderr, "  [%s] %s\n", p->name_.c_str(), line.c_str());
          }
          p->err_.push_back(line);
          if (p->err_.size() > 200) p->err_.erase(p->err_.begin(), p->err_.begin() + 100);
        } else {
          p->out_.push_back(line);
        }
      });
  if (!child.ok()) {
    std::fprintf(stderr, "cannot start %s: %s\n", argv[0].c_str(),
                 child.status().ToString().c_str());
    return nullptr;
  }
  proc->child_ = *std::move(child);
  return proc;
}

std::string Proc::WaitFor(const std::string& marker, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  std::string found;
  auto has = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const std::string& l : out_) {
      const size_t at = l.find(marker);
      if (at != std::string::npos) {
        found = l.substr(at + marker.size());
        return true;
      }
    }
    return false;
  };
  const absl::Time deadline = absl::Now() + timeout;
  while (!has() && absl::Now() < deadline) {
    if (child_->ExitStatus().has_value()) break;
    mu_.AwaitWithTimeout(absl::Condition(&has), absl::Milliseconds(100));
  }
  return found;
}

void Proc::Stop(absl::Duration grace) {
  if (!child_ || child_->ExitStatus().has_value()) return;
  child_->Signal(SIGTERM);
  if (!child_->WaitFor(grace).has_value()) {
    std::fprintf(stderr, "  [%s] did not stop within %s: SIGKILL\n", name_.c_str(),
                 absl::FormatDuration(grace).c_str());
    child_->Signal(SIGKILL);
    child_->WaitFor(absl::Seconds(5));
  }
}

std::string Proc::StderrTail(size_t lines) {
  absl::MutexLock lock(&mu_);
  const size_t from = err_.size() > lines ? err_.size() - lines : 0;
  return absl::StrJoin(err_.begin() + static_cast<std::ptrdiff_t>(from), err_.end(), "\n");
}

double ProcessCpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command name (field 2) may hold spaces: fields are counted after its closing ')'.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(stat.substr(close + 2));
  std::string f;
  unsigned long long utime = 0, stime = 0;
  // After ')': field 3 (state) is index 0; utime is field 14, stime field 15.
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14) utime = std::stoull(f);
    if (i == 15) stime = std::stoull(f);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double SelfCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return absl::StrCat(a, " ", b, " ", c);
}

bool WaitHttpOk(int port, const std::string& path, absl::Duration timeout,
                bool (*body_check)(const std::string&)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    httplib::Client client("127.0.0.1", port);
    client.set_connection_timeout(1, 0);
    auto res = client.Get(path);
    if (res && res->status == 200 && (body_check == nullptr || body_check(res->body))) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

namespace {

StreamResult StreamOnce(httplib::Client& client, const std::string& body, size_t* received) {
  StreamResult out;
  std::string buffer;
  const Clock::time_point t0 = Clock::now();
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = body;
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    *received += len;
    buffer.append(data, len);
    size_t start = 0;
    for (size_t nl; (nl = buffer.find("\n\n", start)) != std::string::npos; start = nl + 2) {
      const absl::string_view event(buffer.data() + start, nl - start);
      if (!absl::StartsWith(event, "data: ")) continue;
      const absl::string_view payload = event.substr(6);
      if (payload == "[DONE]") {
        out.done = true;
        continue;
      }
      const bool has_usage = absl::StrContains(payload, "\"usage\"");
      const bool has_error = absl::StartsWith(payload, "{\"error\"");
      if (!has_usage && !has_error) {
        if (absl::StrContains(payload, "\"choices\"")) {
          if (out.chunks++ == 0) out.ttft_s = SecondsSince(t0, Clock::now());
        }
        continue;
      }
      Json j = Json::parse(std::string_view(payload.data(), payload.size()), nullptr, false);
      if (j.is_discarded()) continue;
      if (j.contains("error")) out.error = j["error"].dump();
      if (j.contains("choices") && !j["choices"].empty()) {
        if (out.chunks++ == 0) out.ttft_s = SecondsSince(t0, Clock::now());
      }
      if (j.contains("usage") && j["usage"].is_object()) {
        const Json& u = j["usage"];
        out.prompt_tokens = u.value("prompt_tokens", int64_t{-1});
        out.completion_tokens = u.value("completion_tokens", int64_t{-1});
        if (u.contains("prompt_tokens_details") && u["prompt_tokens_details"].is_object()) {
          out.cached_tokens = u["prompt_tokens_details"].value("cached_tokens", int64_t{-1});
        }
      }
    }
    buffer.erase(0, start);
    return true;
  };
  httplib::Response res;
  httplib::Error error;
  if (!client.send(req, res, error)) out.error = httplib::to_string(error);
  out.status = res.status;
  out.total_s = SecondsSince(t0, Clock::now());
  if (out.status != 200 && out.error.empty()) out.error = res.body;
  return out;
}

}  // namespace

StreamResult StreamCompletion(httplib::Client& client, const std::string& body) {
  StreamResult out;
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (attempt > 0) absl::SleepFor(absl::Milliseconds(10 * attempt));
    size_t received = 0;
    out = StreamOnce(client, body, &received);
    if (out.status > 0 || received > 0) break;
  }
  return out;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  const double rank = p / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (rank - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

double Mean(const std::vector<double>& v) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

Flags::Flags(int argc, char** argv, std::map<std::string, std::string> defaults, std::string usage)
    : values_(std::move(defaults)) {
  auto fail = [&](const std::string& why) {
    std::fprintf(stderr, "%s%s\nflags (defaults):\n", why.c_str(), why.empty() ? "" : "\n");
    for (const auto& [k, v] : values_) std::fprintf(stderr, "  --%s %s\n", k.c_str(), v.c_str());
    std::fprintf(stderr, "%s\n", usage.c_str());
    std::exit(why.empty() ? 0 : 2);
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") fail("");
    if (!absl::StartsWith(a, "--")) fail(absl::StrCat("unexpected argument '", a, "'"));
    a = a.substr(2);
    std::string value;
    if (const size_t eq = a.find('='); eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      fail(absl::StrCat("--", a, " needs a value"));
    }
    if (!values_.contains(a)) fail(absl::StrCat("unknown flag --", a));
    values_[a] = value;
  }
}

const std::string& Flags::Str(const std::string& key) const { return values_.at(key); }
int64_t Flags::Int(const std::string& key) const { return std::stoll(values_.at(key)); }
double Flags::Double(const std::string& key) const { return std::stod(values_.at(key)); }

}  // namespace expertmesh::bench
