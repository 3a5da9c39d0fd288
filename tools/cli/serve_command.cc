// `expertmesh serve MODEL_DIR`: a router plus local worker groups in one command.
//
// Starts --groups worker groups of --tp x --ep expertmesh-worker processes each, every group
// under a GroupSupervisor (rank 0 first, on a free loopback rendezvous port; the other ranks
// join it), waits until every group's leader prints its address, starts expertmesh-router
// pointed at the leaders, waits for it to listen, and prints the HTTP and gRPC addresses.
// --device goes to every worker, and worker i gets --cuda-device i (each wraps it onto the GPUs
// it sees). Every line the children print is forwarded with a prefix ("[worker0] ",
// "[router] "). Workers listen on loopback only, and every router->worker call and rendezvous
// call carries a fresh random internal token, passed to the children in
// EXPERTMESH_INTERNAL_TOKEN (an environment variable: argv shows in `ps`).
//
// Outside Kubernetes nothing else restarts a failed group, so serve does: when a rank of a
// group that served dies, the group's other ranks are stopped and the group is started again
// on the same port after a backoff (--restart-delay-s doubling up to --max-restart-delay-s,
// reset once the group has served a minute), while the router and the other groups go on
// serving; the router takes the group out on its first failed stream or health check and back
// in when its health check passes again. A group that fails its very first start, or the
// router dying, stops everything with an error. Ctrl-C / SIGTERM stops the router first (it
// drains its streams), then the workers.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/internal_token.h"
#include "tools/cli/child_process.h"
#include "tools/cli/commands.h"
#include "tools/cli/group_supervisor.h"

namespace expertmesh::cli {
namespace {

struct ServeFlags {
  std::string model_dir;
  int groups = 1;
  int tp = 1;
  int ep = 1;
  std::string host = "127.0.0.1";
  int http_port = 8000;
  int grpc_port = 50051;
  std::string kv_budget = "512MiB";
  int threads = 0;
  bool batch_invariant = false;
  std::string compute_dtype = "bf16";
  std::string quantize = "none";          // passed to the workers
  std::string quantize_lm_head = "none";  // passed to the workers
  std::string device = "auto";
  int max_running = 64;
  std::string routing = "prefix";
  std::string bin_dir;  // default: the directory of this program
  double ready_timeout_s = 300;
  double grace_s = 10;
  double restart_delay_s = 1;
  double max_restart_delay_s = 30;
};

// How long a restarted group must serve before its next failure waits restart_delay_s again.
constexpr absl::Duration kRestartBackoffReset = absl::Seconds(60);

// State shared by the reader/waiter/supervisor threads and the main thread.
struct Shared {
  absl::Mutex mu;
  std::vector<std::string> worker_addresses ABSL_GUARDED_BY(mu);  // "" until first ready
  std::string http_url ABSL_GUARDED_BY(mu);
  std::string grpc_address ABSL_GUARDED_BY(mu);
  bool router_ready ABSL_GUARDED_BY(mu) = false;
  std::string died ABSL_GUARDED_BY(mu);  // the router's exit, or a group's failed first start
  int signal ABSL_GUARDED_BY(mu) = 0;
  bool stopping ABSL_GUARDED_BY(mu) = false;
};

// Guards no data: keeps the children's relayed lines whole on our stdout/stderr.
absl::Mutex g_print_mu;
void PrintLine(const std::string& prefix, const std::string& line, bool is_stderr) {
  absl::MutexLock lock(&g_print_mu);
  std::FILE* out = is_stderr ? stderr : stdout;
  std::fprintf(out, "%s %s\n", prefix.c_str(), line.c_str());
  std::fflush(out);
}

std::string AfterMarker(const std::string& line, const std::string& marker) {
  const size_t at = line.find(marker);
  return at == std::string::npos ? "" : line.substr(at + marker.size());
}

std::string DefaultBinDir() {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : self.parent_path().string();
}

class Launcher {
 public:
  explicit Launcher(const ServeFlags& flags) : f_(flags) {
    absl::MutexLock lock(&shared_.mu);
    shared_.worker_addresses.assign(f_.groups, "");
  }

  absl::Status Run() {
    const std::string bin = f_.bin_dir.empty() ? DefaultBinDir() : f_.bin_dir;
    const std::string worker_bin = absl::StrCat(bin, "/expertmesh-worker");
    const std::string router_bin = absl::StrCat(bin, "/expertmesh-router");
    for (const std::string& path : {worker_bin, router_bin}) {
      if (access(path.c_str(), X_OK) != 0) {
        return absl::NotFoundError(absl::StrCat(path, " not found (build it, or pass --bin-dir)"));
      }
    }
    const absl::Time deadline = absl::Now() + absl::Seconds(f_.ready_timeout_s);
    for (int g = 0; g < f_.groups; ++g) {
      groups_.push_back(std::make_unique<GroupSupervisor>(GroupOptions(g, worker_bin)));
    }
    for (auto& group : groups_) group->Start();
    absl::Status ready = Await(deadline, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(shared_.mu) {
      for (const std::string& a : shared_.worker_addresses) {
        if (a.empty()) return false;
      }
      return true;
    });
    if (!ready.ok()) return Stop(ready);
    std::vector<std::string> workers;
    {
      absl::MutexLock lock(&shared_.mu);
      workers = shared_.worker_addresses;
    }
    std::vector<std::string> router_argv = {router_bin,
                                            "--model-dir",
                                            f_.model_dir,
                                            "--workers",
                                            absl::StrJoin(workers, ","),
                                            "--host",
                                            f_.host,
                                            "--http-port",
                                            absl::StrCat(f_.http_port),
                                            "--grpc-port",
                                            absl::StrCat(f_.grpc_port),
                                            "--routing",
                                            f_.routing,
                                            "--grace-s",
                                            absl::StrCat(f_.grace_s)};
    absl::Status started = StartRouter(router_argv);
    if (!started.ok()) return Stop(started);
    ready = Await(deadline, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(shared_.mu) {
      return shared_.router_ready;
    });
    if (!ready.ok()) return Stop(ready);
    {
      absl::MutexLock lock(&shared_.mu);
      absl::MutexLock print(&g_print_mu);
      std::printf("expertmesh serve: ready: %d worker group(s) [%s]\n", f_.groups,
                  absl::StrJoin(shared_.worker_addresses, ", ").c_str());
      if (!shared_.http_url.empty()) {
        std::printf("expertmesh serve: OpenAI-compatible HTTP API at %s/v1\n",
                    shared_.http_url.c_str());
      }
      if (!shared_.grpc_address.empty()) {
        std::printf("expertmesh serve: gRPC API (expertmesh.v1.Inference) at %s\n",
                    shared_.grpc_address.c_str());
      }
      std::printf("expertmesh serve: Ctrl-C stops everything\n");
      std::fflush(stdout);
    }
    // Serve until a signal or the router's death; the supervisors restart failed groups.
    std::string died;
    {
      absl::MutexLock lock(&shared_.mu);
      auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(shared_.mu) {
        return shared_.signal != 0 || !shared_.died.empty();
      };
      shared_.mu.Await(absl::Condition(&done));
      died = shared_.died;
    }
    return Stop(died.empty() ? absl::OkStatus() : absl::UnavailableError(died));
  }

  // Called by the signal thread.
  void OnSignal(int sig) {
    absl::MutexLock lock(&shared_.mu);
    if (shared_.signal == 0) shared_.signal = sig;
  }

 private:
  GroupSupervisorOptions GroupOptions(int g, const std::string& worker_bin) {
    GroupSupervisorOptions o;
    o.group = g;
    o.world = f_.tp * f_.ep;
    o.argv = [this, g, worker_bin, world = o.world](int rank, int rendezvous_port, int port) {
      std::vector<std::string> argv = {
          worker_bin, "--model", f_.model_dir, "--host", "127.0.0.1", "--port", absl::StrCat(port),
          "--tp", absl::StrCat(f_.tp), "--ep", absl::StrCat(f_.ep), "--kv-budget", f_.kv_budget,
          "--threads", absl::StrCat(f_.threads), "--compute-dtype", f_.compute_dtype,
          "--max-running", absl::StrCat(f_.max_running), "--grace-s", absl::StrCat(f_.grace_s),
          "--device", f_.device,
          // Worker i of this machine runs on GPU i (mod the GPUs
          // it sees), so ranks spread over the GPUs; with fewer
          // GPUs than ranks some share one and their group talks
          // over Gloo.
          "--cuda-device", absl::StrCat(g * world + rank)};
      if (f_.batch_invariant) argv.push_back("--batch-invariant");
      if (f_.quantize != "none") {
        argv.push_back("--quantize");
        argv.push_back(f_.quantize);
      }
      if (f_.quantize_lm_head != "none") {
        argv.push_back("--quantize-lm-head");
        argv.push_back(f_.quantize_lm_head);
      }
      if (world > 1) {
        for (const std::string& a :
             {std::string("--rank"), absl::StrCat(rank), std::string("--leader"),
              absl::StrCat("127.0.0.1:", rendezvous_port)}) {
          argv.push_back(a);
        }
      }
      return argv;
    };
    o.backoff.initial_delay = absl::Seconds(f_.restart_delay_s);
    o.backoff.max_delay = absl::Seconds(f_.max_restart_delay_s);
    o.backoff.reset_after = kRestartBackoffReset;
    o.ready_timeout = absl::Seconds(f_.ready_timeout_s);
    o.stop_grace = absl::Seconds(f_.grace_s + 5);
    o.print = PrintLine;
    o.on_first_start = [this, g](const absl::StatusOr<std::string>& address) {
      absl::MutexLock lock(&shared_.mu);
      if (address.ok()) {
        shared_.worker_addresses[g] = *address;
      } else if (!shared_.stopping && shared_.died.empty()) {
        shared_.died = absl::StrCat("group ", g, ": ", address.status().message());
      }
    };
    return o;
  }

  absl::Status StartRouter(const std::vector<std::string>& argv) {
    absl::StatusOr<std::unique_ptr<ChildProcess>> child =
        ChildProcess::Spawn(argv, [this](const std::string& line, bool is_stderr) {
          PrintLine("[router]", line, is_stderr);
          if (is_stderr) return;
          const std::string http = AfterMarker(line, "HTTP listening on ");
          const std::string grpc = AfterMarker(line, "gRPC listening on ");
          absl::MutexLock lock(&shared_.mu);
          if (!http.empty()) shared_.http_url = http;
          if (!grpc.empty()) shared_.grpc_address = grpc;
          if ((f_.http_port < 0 || !shared_.http_url.empty()) &&
              (f_.grpc_port < 0 || !shared_.grpc_address.empty())) {
            shared_.router_ready = true;
          }
        });
    if (!child.ok()) return child.status();
    (*child)->OnExit([this](int status) {
      absl::MutexLock lock(&shared_.mu);
      if (!shared_.stopping && shared_.died.empty()) {
        shared_.died = absl::StrCat("router ", DescribeWaitStatus(status));
      }
    });
    router_ = std::move(*child);
    return absl::OkStatus();
  }

  // Waits for `ready`, a signal, a fatal death or the deadline.
  template <typename Ready>
  absl::Status Await(absl::Time deadline, Ready ready) {
    absl::MutexLock lock(&shared_.mu);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(shared_.mu) {
      return ready() || shared_.signal != 0 || !shared_.died.empty();
    };
    if (!shared_.mu.AwaitWithDeadline(absl::Condition(&done), deadline)) {
      return absl::DeadlineExceededError(
          absl::StrCat("not ready after ", f_.ready_timeout_s, " s (--ready-timeout-s)"));
    }
    if (!shared_.died.empty()) {
      return absl::UnavailableError(absl::StrCat(shared_.died, " (before serve was ready)"));
    }
    if (shared_.signal != 0) return absl::CancelledError("interrupted while starting");
    return absl::OkStatus();
  }

  // Stops the router first (it drains its streams), then every group at once: a group's other
  // ranks ignore the signal and exit when their leader, having drained, tells them to.
  absl::Status Stop(absl::Status status) {
    {
      absl::MutexLock lock(&shared_.mu);
      shared_.stopping = true;
    }
    PrintLine("expertmesh serve:", "stopping", false);
    if (router_ != nullptr) {
      router_->Signal(SIGTERM);
      if (!router_->WaitFor(absl::Seconds(f_.grace_s + 5)).has_value()) {
        router_->Signal(SIGKILL);
        router_->WaitFor(absl::Seconds(5));
      }
      router_.reset();
    }
    for (auto& group : groups_) group->RequestStop();
    for (auto& group : groups_) group->Wait();
    groups_.clear();
    PrintLine("expertmesh serve:", "stopped", false);
    return status;
  }

  const ServeFlags f_;
  Shared shared_;
  std::vector<std::unique_ptr<GroupSupervisor>> groups_;
  std::unique_ptr<ChildProcess> router_;
};

int g_signal_pipe[2] = {-1, -1};
void OnSignal(int sig) {
  const char byte = static_cast<char>(sig);
  (void)!write(g_signal_pipe[1], &byte, 1);
}

absl::Status RunServe(const ServeFlags& flags) {
  if (flags.groups < 1) return absl::InvalidArgumentError("--groups must be >= 1");
  if (absl::Status backoff =
          RestartBackoffOptions{.initial_delay = absl::Seconds(flags.restart_delay_s),
                                .max_delay = absl::Seconds(flags.max_restart_delay_s),
                                .reset_after = kRestartBackoffReset}
              .Validate();
      !backoff.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--restart-delay-s / --max-restart-delay-s: ", backoff.message()));
  }
  if (!std::filesystem::exists(std::filesystem::path(flags.model_dir) / "config.json")) {
    return absl::NotFoundError(absl::StrCat(flags.model_dir, "/config.json not found"));
  }
  // A handler feeding a pipe, not sigwait: library threads started before main (BLAS pools)
  // do not block signals.
  if (pipe(g_signal_pipe) != 0) return absl::InternalError("serve: pipe failed");
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  // One token for this run's router and workers. One already in the environment is kept, so
  // a user can reach the workers with it; a blank one is refused below, as the workers would.
  if (std::getenv(kInternalTokenEnv) == nullptr) {
    absl::StatusOr<std::string> token = GenerateInternalToken();
    if (!token.ok()) return token.status();
    setenv(kInternalTokenEnv, token->c_str(), 1);
  }
  if (absl::StatusOr<InternalToken> token = InternalToken::Load("", kInternalTokenEnv);
      !token.ok()) {
    return token.status();
  }
  Launcher launcher(flags);
  std::thread signals([&launcher] {
    char byte = 0;
    while (read(g_signal_pipe[0], &byte, 1) != 1) {
    }
    launcher.OnSignal(byte);
    while (read(g_signal_pipe[0], &byte, 1) != 1) {
    }
    std::fprintf(stderr, "expertmesh serve: second signal, exiting now\n");
    std::_Exit(128 + byte);  // children get SIGTERM through PR_SET_PDEATHSIG
  });
  signals.detach();
  return launcher.Run();
}

}  // namespace

Command AddServeCommand(CLI::App& parent) {
  auto flags = std::make_shared<ServeFlags>();
  CLI::App* app = parent.add_subcommand(
      "serve", "Start a router and local worker groups for a model directory (Ctrl-C stops)");
  app->add_option("model_dir", flags->model_dir, "Model directory")->required();
  app->add_option("--groups", flags->groups, "Worker groups (tp x ep processes each)")
      ->capture_default_str();
  app->add_option("--tp", flags->tp, "Tensor-parallel ranks per group")->capture_default_str();
  app->add_option("--ep", flags->ep, "Expert-parallel ranks per group")->capture_default_str();
  app->add_option("--host", flags->host, "Router listen address")->capture_default_str();
  app->add_option("--http-port", flags->http_port, "HTTP port (0: any free port, -1: off)")
      ->capture_default_str();
  app->add_option("--grpc-port", flags->grpc_port, "gRPC port (0: any free port, -1: off)")
      ->capture_default_str();
  app->add_option("--kv-budget", flags->kv_budget, "KV cache per worker")->capture_default_str();
  app->add_option("--threads", flags->threads, "CPU threads per worker (0: all cores)")
      ->capture_default_str();
  app->add_option("--compute-dtype", flags->compute_dtype, "f32 | bf16")->capture_default_str();
  app->add_option("--quantize", flags->quantize,
                  "none | fp8 | int4: workers quantize a bf16 checkpoint at load (fp8: linear "
                  "weights in 128x128 blocks; int4: routed experts in groups of 128)")
      ->check(CLI::IsMember({"none", "fp8", "int4"}))
      ->capture_default_str();
  app->add_option("--quantize-lm-head", flags->quantize_lm_head,
                  "none | fp8: workers quantize lm_head (a copy of the embedding table when "
                  "tied) to fp8 in 128x128 blocks at load, which published FP8 checkpoints keep "
                  "in bf16: fewer bytes per decoded token, fp8 rounding in the logits")
      ->check(CLI::IsMember({"none", "fp8"}))
      ->capture_default_str();
  app->add_flag("--batch-invariant", flags->batch_invariant,
                "CPU workers: a token's output never depends on its batch (every product on one "
                "kernel; slower at 1-3 tokens per weight on AMX CPUs, and for q4 weights at "
                "many tokens per weight on AVX512_BF16)");
  app->add_option("--device", flags->device,
                  "Worker backend: cpu | cuda | auto (each worker on its own GPU where there are "
                  "enough)")
      ->capture_default_str();
  app->add_option("--max-running", flags->max_running, "Running sequences per worker")
      ->capture_default_str();
  app->add_option("--routing", flags->routing, "prefix | least-loaded | round-robin")
      ->capture_default_str();
  app->add_option("--bin-dir", flags->bin_dir,
                  "Where expertmesh-worker and expertmesh-router are (default: beside this)");
  app->add_option("--ready-timeout-s", flags->ready_timeout_s, "Startup time limit")
      ->capture_default_str();
  app->add_option("--grace-s", flags->grace_s, "Drain time on Ctrl-C")->capture_default_str();
  app->add_option("--restart-delay-s", flags->restart_delay_s,
                  "Wait before restarting a worker group that failed; doubles on each failure "
                  "in a row, back to this once the group served a minute")
      ->capture_default_str();
  app->add_option("--max-restart-delay-s", flags->max_restart_delay_s,
                  "Longest wait before restarting a failed worker group")
      ->capture_default_str();
  return {app, [flags] { return RunServe(*flags); }};
}

}  // namespace expertmesh::cli
