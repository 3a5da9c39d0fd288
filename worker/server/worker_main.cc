// expertmesh-worker: one rank of a worker group. Rank 0 (the only rank for now) loads the
// model, runs the engine loop and serves the internal Worker gRPC API to routers.
//
//   expertmesh-worker --model DIR [--port 0] [--host 0.0.0.0] [--kv-budget 2GiB] ...
//
// Prints "expertmesh-worker: listening on HOST:PORT" on stdout once it serves (port 0 picks a
// free port). SIGTERM/SIGINT: readiness NOT_SERVING at once, in-flight requests drain for
// --grace-s, then it exits; a second signal exits at once.
#include <signal.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "worker/comm/group_config.h"
#include "worker/engine/engine.h"
#include "worker/server/byte_size.h"
#include "worker/server/engine_adapter.h"
#include "worker/server/engine_loop.h"
#include "worker/server/worker_server.h"

namespace expertmesh::server {
namespace {

struct WorkerFlags {
  std::string model_dir;
  std::string model_name;
  std::string host = "0.0.0.0";
  int port = 0;
  int tp = 1;
  int ep = 1;
  std::optional<int> rank;
  std::optional<std::string> leader;
  std::string kv_budget = "1GiB";
  int64_t max_batched_tokens = 2048;
  int32_t max_running = 64;
  int64_t max_model_len = 0;
  int32_t block_size = 16;
  std::string compute_dtype = "bf16";
  int threads = 0;
  std::string device = "auto";
  int32_t max_queued = 1024;
  double grace_s = 30;
};

// Multi-rank groups need the sharded forward passes (and the step-plan broadcast from this
// leader); say so plainly rather than serve something else.
absl::Status CheckParallelism(const WorkerFlags& flags) {
  if (flags.tp < 1 || flags.ep < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tp ", flags.tp, " and --ep ", flags.ep, " must be >= 1"));
  }
  constexpr const char* kMissing =
      "need tensor/expert-parallel sharded forward passes (per-rank weight slices, TP "
      "all-reduce, EP all-to-all) and the leader's step-plan broadcast, which are not "
      "implemented yet; run each group as one rank (--tp 1 --ep 1)";
  if (flags.tp > 1 || flags.ep > 1) {
    return absl::UnimplementedError(absl::StrCat("worker groups of several ranks (--tp ", flags.tp,
                                                 " --ep ", flags.ep, ") ", kMissing));
  }
  // The environment (EXPERTMESH_*, LeaderWorkerSet) may describe a bigger group.
  ASSIGN_OR_RETURN(
      comm::GroupConfig group,
      comm::ResolveGroupConfig({.leader = flags.leader, .rank = flags.rank}, comm::ProcessEnv()));
  if (group.world_size > 1) {
    return absl::UnimplementedError(
        absl::StrCat("worker groups of several ranks (", group.source, ") ", kMissing));
  }
  return absl::OkStatus();
}

absl::StatusOr<engine::EngineOptions> EngineOptionsFrom(const WorkerFlags& flags) {
  engine::EngineOptions options;
  if (flags.compute_dtype == "f32") {
    options.compute_dtype = DType::kF32;
  } else if (flags.compute_dtype == "bf16") {
    options.compute_dtype = DType::kBF16;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--compute-dtype must be f32 or bf16, got ", flags.compute_dtype));
  }
  if (flags.device != "cpu" && flags.device != "auto") {
    return absl::UnimplementedError(absl::StrCat(
        "--device ", flags.device, ": only the CPU backend is built into this worker (cpu|auto)"));
  }
  ASSIGN_OR_RETURN(options.kv_cache_bytes, ParseByteSize(flags.kv_budget, "--kv-budget"));
  options.num_threads = flags.threads;
  options.max_num_batched_tokens = flags.max_batched_tokens;
  options.max_num_seqs = flags.max_running;
  options.max_model_len = flags.max_model_len;
  options.block_size = flags.block_size;
  return options;
}

// SIGINT/SIGTERM become bytes on a pipe that one thread reads (threads that libraries start
// before main, e.g. BLAS pools, do not block signals, so a handler is the reliable way).
int g_signal_pipe[2] = {-1, -1};
void OnSignal(int sig) {
  const char byte = static_cast<char>(sig);
  (void)!write(g_signal_pipe[1], &byte, 1);
}

class SignalWatcher {
 public:
  SignalWatcher() {
    if (pipe(g_signal_pipe) != 0) std::abort();
    struct sigaction action = {};
    action.sa_handler = OnSignal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGTERM, &action, nullptr);
    thread_ = std::thread([this] {
      char byte = 0;
      while (read(g_signal_pipe[0], &byte, 1) != 1) {
      }
      signal_ = byte;
      first_.Notify();
      while (read(g_signal_pipe[0], &byte, 1) != 1) {
      }
      std::fprintf(stderr, "expertmesh-worker: second signal, exiting now\n");
      std::_Exit(128 + byte);
    });
    thread_.detach();
  }
  absl::Notification& first() { return first_; }
  int signal() const { return signal_; }

 private:
  std::thread thread_;
  absl::Notification first_;
  int signal_ = 0;
};

absl::Status Run(const WorkerFlags& flags, SignalWatcher& signals) {
  RETURN_IF_ERROR(CheckParallelism(flags));
  ASSIGN_OR_RETURN(engine::EngineOptions options, EngineOptionsFrom(flags));
  std::string name = flags.model_name;
  if (name.empty()) {
    name = std::filesystem::path(flags.model_dir).lexically_normal().filename().string();
    if (name.empty()) name = std::filesystem::path(flags.model_dir).parent_path().filename();
  }
  EM_LOG_INFO("worker: loading {} (compute {}, KV budget {} bytes)", flags.model_dir,
              flags.compute_dtype, options.kv_cache_bytes);
  ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> engine,
                   engine::Engine::Create(flags.model_dir, options));
  const int32_t kv_blocks = engine->num_kv_blocks();
  const int64_t max_len = engine->max_model_len();
  if (signals.first().HasBeenNotified()) return absl::OkStatus();

  EngineLoop loop(std::make_unique<EngineAdapter>(std::move(engine), name),
                  {.max_queued = flags.max_queued});
  loop.Start();
  ASSIGN_OR_RETURN(std::unique_ptr<WorkerServer> server,
                   WorkerServer::Start(&loop, {.host = flags.host,
                                               .port = flags.port,
                                               .service = {.tp = flags.tp, .ep = flags.ep}}));
  std::printf("expertmesh-worker: model %s, %d KV blocks, context %lld\n", name.c_str(), kv_blocks,
              static_cast<long long>(max_len));
  std::printf("expertmesh-worker: listening on %s:%d\n", flags.host.c_str(), server->port());
  std::fflush(stdout);

  signals.first().WaitForNotification();
  EM_LOG_INFO("worker: signal {}: not serving, draining {} live requests for up to {} s",
              signals.signal(), loop.NumLive(), flags.grace_s);
  const int32_t cut = server->Shutdown(absl::Seconds(flags.grace_s));
  loop.Stop();
  std::printf("expertmesh-worker: stopped (%d requests cut off)\n", cut);
  std::fflush(stdout);
  return absl::OkStatus();
}

}  // namespace
}  // namespace expertmesh::server

int main(int argc, char** argv) {
  expertmesh::server::WorkerFlags f;
  CLI::App app{"expertmesh-worker: one rank of a worker group (serves the internal Worker API)"};
  app.add_option("--model", f.model_dir, "Model directory (config.json + safetensors)")->required();
  app.add_option("--model-name", f.model_name, "Name in load reports (default: directory name)");
  app.add_option("--host", f.host, "Address to listen on")->capture_default_str();
  app.add_option("--port", f.port, "Port (0: a free port, printed)")->capture_default_str();
  app.add_option("--tp", f.tp, "Tensor-parallel ranks of the group")->capture_default_str();
  app.add_option("--ep", f.ep, "Expert-parallel ranks of the group")->capture_default_str();
  app.add_option("--rank", f.rank, "This rank (default: EXPERTMESH_RANK / LWS_WORKER_INDEX / 0)");
  app.add_option("--leader", f.leader, "Group leader host:port for rendezvous");
  app.add_option("--kv-budget", f.kv_budget, "KV cache memory (e.g. 512MiB, 2GiB)")
      ->capture_default_str();
  app.add_option("--max-batched-tokens", f.max_batched_tokens, "Token budget per step")
      ->capture_default_str();
  app.add_option("--max-running", f.max_running, "Running sequences at most")
      ->capture_default_str();
  app.add_option("--max-model-len", f.max_model_len, "Context length (0: model's, capped)")
      ->capture_default_str();
  app.add_option("--block-size", f.block_size, "Tokens per KV block")->capture_default_str();
  app.add_option("--max-queued", f.max_queued, "Waiting requests before RESOURCE_EXHAUSTED")
      ->capture_default_str();
  app.add_option("--compute-dtype", f.compute_dtype, "f32 | bf16")->capture_default_str();
  app.add_option("--threads", f.threads, "CPU threads (0: all cores)")->capture_default_str();
  app.add_option("--device", f.device, "cpu | auto")->capture_default_str();
  app.add_option("--grace-s", f.grace_s, "Drain time on SIGTERM/SIGINT")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::signal(SIGPIPE, SIG_IGN);
  expertmesh::server::SignalWatcher signals;
  absl::Status status = expertmesh::server::Run(f, signals);
  if (!status.ok()) {
    std::fprintf(stderr, "expertmesh-worker: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
