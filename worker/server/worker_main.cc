// expertmesh-worker: one rank of a worker group. Every rank loads its shard of the model
// (tp x ep, see worker/models/shard.h); rank 0 also runs the engine loop, broadcasts each step
// to the other ranks and serves the internal Worker gRPC API to routers.
//
//   expertmesh-worker --model DIR [--port 0] [--host 0.0.0.0] [--kv-budget 2GiB] ...
//   expertmesh-worker --model DIR --tp 2 --rank R --leader HOST:PORT ...   (a group of two)
//   expertmesh-worker --model DIR --device cuda [--cuda-device N] ...     (on a GPU)
// --device cpu|cuda|auto picks the backend (backend_select.h); a group whose ranks each have a
// GPU exchanges activations over NCCL, any other group over Gloo (group_comm_select.h).
// Group placement may also come from EXPERTMESH_* or LeaderWorkerSet variables
// (worker/comm/group_config.h). A group that breaks (a rank died or timed out) cannot go on:
// its ranks exit non-zero and are restarted together.
//
// Prints "expertmesh-worker: listening on HOST:PORT" on stdout once it serves (port 0 picks a
// free port). SIGTERM/SIGINT: readiness NOT_SERVING at once, in-flight requests drain for
// --grace-s, then it exits; a second signal exits at once.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "model/config/model_config.h"
#include "worker/comm/comm_group.h"
#include "worker/comm/group_config.h"
#include "worker/engine/engine.h"
#include "worker/engine/follower.h"
#include "worker/engine/step_sync.h"
#include "worker/models/model.h"
#include "worker/server/backend_select.h"
#include "worker/server/byte_size.h"
#include "worker/server/engine_adapter.h"
#include "worker/server/engine_loop.h"
#include "worker/server/group_comm_select.h"
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
  int cuda_device = -1;
  int32_t max_queued = 1024;
  double grace_s = 30;
  double comm_timeout_s = 30;
  std::optional<int> ranks_per_pod;
};

// The group this process is a rank of: flags > EXPERTMESH_* > LeaderWorkerSet environment
// (group_config.h). Its size must be tp x ep.
absl::StatusOr<comm::GroupConfig> ResolveGroup(const WorkerFlags& flags,
                                               const comm::EnvLookup& env) {
  if (flags.tp < 1 || flags.ep < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tp ", flags.tp, " and --ep ", flags.ep, " must be >= 1"));
  }
  const int world = flags.tp * flags.ep;
  // --tp x --ep gives the size when the environment does not; when it does, they must agree.
  // With several ranks per pod (main() settles the flag) the size counts pods.
  const int per_pod = flags.ranks_per_pod.value_or(1);
  std::optional<int> world_flag;
  if (world > 1 && !env("EXPERTMESH_WORLD_SIZE").has_value() &&
      !env("LWS_GROUP_SIZE").has_value() && world % per_pod == 0) {
    world_flag = world / per_pod;
  }
  ASSIGN_OR_RETURN(
      comm::GroupConfig group,
      comm::ResolveGroupConfig(
          {.leader = flags.leader, .rank = flags.rank, .world_size = world_flag}, env));
  if (group.world_size != world) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tp ", flags.tp, " x --ep ", flags.ep, " = ", world,
                     " ranks, but the group has ", group.world_size, " (", group.source,
                     "); pods per group (LWS_GROUP_SIZE / EXPERTMESH_WORLD_SIZE) x --ranks-per-pod "
                     "must be tp x ep"));
  }
  return group;
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
  ASSIGN_OR_RETURN(options.kv_cache_bytes, ParseByteSize(flags.kv_budget, "--kv-budget"));
  options.num_threads = flags.threads;
  options.max_num_batched_tokens = flags.max_batched_tokens;
  options.max_num_seqs = flags.max_running;
  options.max_model_len = flags.max_model_len;
  options.block_size = flags.block_size;
  return options;
}

// The backend this rank runs on (--device, --cuda-device, the pod's local rank).
absl::StatusOr<DeviceChoice> ChooseWorkerDevice(const WorkerFlags& flags) {
  ASSIGN_OR_RETURN(DeviceChoice choice, ChooseDevice({.device = flags.device,
                                                      .cuda_device = flags.cuda_device,
                                                      .local_rank = LocalRankFromEnv()},
                                                     ProbeDevices()));
  EM_LOG_INFO("worker: device {}", choice.reason);
  return choice;
}

// This rank's shard of the model on `backend` (the whole model in a group of one).
absl::StatusOr<std::unique_ptr<models::Model>> LoadShard(const WorkerFlags& flags,
                                                         const engine::EngineOptions& options,
                                                         runtime::Backend& backend,
                                                         const models::ShardSpec& shard,
                                                         comm::Communicator* comm) {
  ASSIGN_OR_RETURN(model::ModelConfig config, model::LoadModelConfig(flags.model_dir));
  models::ModelOptions mo;
  mo.compute_dtype = options.compute_dtype;
  mo.max_positions = options.max_model_len > 0
                         ? options.max_model_len
                         : std::min<int64_t>(config.max_position_embeddings, 32768);
  mo.shard = shard;
  mo.comm = comm;
  EM_LOG_INFO("worker: loading {} shard of {} on {} (compute {})", shard.ToString(),
              flags.model_dir, std::string(backend.Name()), flags.compute_dtype);
  return models::LoadModel(flags.model_dir, &backend, mo);
}

std::string ModelName(const WorkerFlags& flags) {
  std::string name = flags.model_name;
  if (name.empty()) {
    name = std::filesystem::path(flags.model_dir).lexically_normal().filename().string();
    if (name.empty()) name = std::filesystem::path(flags.model_dir).parent_path().filename();
  }
  return name;
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

absl::Status RunGroup(const WorkerFlags& flags, const comm::GroupConfig& group,
                      SignalWatcher& signals);

// With several ranks per pod (one per GPU), the process the pod starts is a launcher: it runs
// one copy of this program per local rank (EXPERTMESH_LOCAL_RANK = 0..n-1), passes signals on,
// and when one rank exits with an error stops the others and exits with that error, so the
// pod fails as a whole (and LeaderWorkerSet recreates the group).
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

absl::Status Run(const WorkerFlags& flags, SignalWatcher& signals) {
  ASSIGN_OR_RETURN(comm::GroupConfig group, ResolveGroup(flags, comm::ProcessEnv()));
  if (group.world_size > 1) return RunGroup(flags, group, signals);
  ASSIGN_OR_RETURN(engine::EngineOptions options, EngineOptionsFrom(flags));
  ASSIGN_OR_RETURN(DeviceChoice device, ChooseWorkerDevice(flags));
  const std::string name = ModelName(flags);
  EM_LOG_INFO("worker: KV budget {} bytes", options.kv_cache_bytes);
  ASSIGN_OR_RETURN(std::unique_ptr<runtime::Backend> backend,
                   CreateBackend(device, {.cpu_threads = options.num_threads}));
  ASSIGN_OR_RETURN(std::unique_ptr<models::Model> model,
                   LoadShard(flags, options, *backend, models::ShardSpec{}, nullptr));
  ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> engine,
                   engine::Engine::Create(std::move(backend), std::move(model), options));
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

// A rank of a worker group of several. Every rank loads its shard of the weights; rank 0 runs
// the scheduler and the server and broadcasts each step, the others follow (follower.h).
absl::Status RunGroup(const WorkerFlags& flags, const comm::GroupConfig& group,
                      SignalWatcher& signals) {
  ASSIGN_OR_RETURN(engine::EngineOptions options, EngineOptionsFrom(flags));
  ASSIGN_OR_RETURN(DeviceChoice device, ChooseWorkerDevice(flags));
  const models::ShardSpec shard{.tp_size = flags.tp,
                                .tp_rank = group.rank % flags.tp,
                                .ep_size = flags.ep,
                                .ep_rank = group.rank / flags.tp};
  EM_LOG_INFO("worker: {} of a tp {} x ep {} group ({}), joining through {}:{}", shard.ToString(),
              flags.tp, flags.ep, group.source, group.leader_host, group.leader_port);
  comm::JoinOptions join;
  join.group = group;
  join.timeout = absl::Seconds(flags.comm_timeout_s);
  join.on_leader_listening = [](int port) {
    // A launcher (expertmesh serve, tests) reads this to start the other ranks.
    std::printf("expertmesh-worker: rendezvous listening on port %d\n", port);
    std::fflush(stdout);
  };
  ASSIGN_OR_RETURN(std::unique_ptr<comm::CommGroup> comm_group, comm::CommGroup::Join(join));
  ASSIGN_OR_RETURN(std::unique_ptr<runtime::Backend> backend,
                   CreateBackend(device, {.cpu_threads = options.num_threads}));
  // Every rank learns where the others run; NCCL when each has a GPU of its own. Declared after
  // comm_group: the NCCL communicator uses the Gloo one and is destroyed first.
  ASSIGN_OR_RETURN(GroupComm group_comm, SelectGroupComm(device, comm_group->comm(), join.timeout));
  EM_LOG_INFO("worker: {}", group_comm.choice.reason);
  comm::Communicator& comm = group_comm.nccl ? *group_comm.nccl : comm_group->comm();

  ASSIGN_OR_RETURN(std::unique_ptr<models::Model> model,
                   LoadShard(flags, options, *backend, shard, &comm));

  if (group.rank != 0) {
    std::printf("expertmesh-worker: %s loaded (%llu weight bytes), following the leader\n",
                shard.ToString().c_str(), static_cast<unsigned long long>(model->weight_bytes()));
    std::fflush(stdout);
    // Signals do not stop a follower: its leader drains the group and then says stop.
    engine::FollowerStats stats;
    absl::Status status = engine::RunFollower(*backend, *model, comm, &stats);
    std::printf("expertmesh-worker: %s stopped after %llu steps\n", shard.ToString().c_str(),
                static_cast<unsigned long long>(stats.steps));
    std::fflush(stdout);
    if (!status.ok()) {
      return absl::Status(status.code(), absl::StrCat("rank ", group.rank,
                                                      ": the group broke: ", status.message()));
    }
    return absl::OkStatus();
  }

  ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> engine,
                   engine::Engine::Create(std::move(backend), std::move(model), options));
  RETURN_IF_ERROR(engine::SendGeometry(comm, engine->num_kv_blocks(), options.block_size));
  engine->SetStepListener(
      [&comm](const std::vector<kv::KvBlockCopy>& copies, const models::ForwardBatch& batch) {
        return engine::PublishToGroup(comm, engine::EncodeStep(copies, batch));
      });
  const int32_t kv_blocks = engine->num_kv_blocks();
  const int64_t max_len = engine->max_model_len();
  const std::string name = ModelName(flags);
  auto adapter = std::make_unique<EngineAdapter>(std::move(engine), name);
  adapter->SetIdleHook([&comm] { return engine::SendHeartbeat(comm); });

  absl::Notification fatal;
  absl::Mutex fatal_mu;
  absl::Status fatal_status;
  std::atomic<WorkerServer*> serving{nullptr};
  EngineLoopOptions loop_options{.max_queued = flags.max_queued};
  loop_options.on_fatal = [&](const absl::Status& status) {
    // Readiness goes NOT_SERVING at once, before the main thread notices: routers must not
    // send new requests to a group that can no longer run a step.
    if (WorkerServer* s = serving.load()) s->SetServing(false);
    absl::MutexLock lock(&fatal_mu);
    if (fatal.HasBeenNotified()) return;
    fatal_status = status;
    fatal.Notify();
  };
  EngineLoop loop(std::move(adapter), loop_options);
  loop.Start();
  ASSIGN_OR_RETURN(std::unique_ptr<WorkerServer> server,
                   WorkerServer::Start(&loop, {.host = flags.host,
                                               .port = flags.port,
                                               .service = {.tp = flags.tp, .ep = flags.ep}}));
  serving.store(server.get());
  if (fatal.HasBeenNotified()) server->SetServing(false);
  std::printf(
      "expertmesh-worker: model %s, group of %d ranks (tp %d x ep %d), %d KV blocks, "
      "context %lld\n",
      name.c_str(), group.world_size, flags.tp, flags.ep, kv_blocks,
      static_cast<long long>(max_len));
  std::printf("expertmesh-worker: listening on %s:%d\n", flags.host.c_str(), server->port());
  std::fflush(stdout);

  while (!signals.first().WaitForNotificationWithTimeout(absl::Milliseconds(100))) {
    if (fatal.HasBeenNotified()) break;
  }
  if (fatal.HasBeenNotified()) {
    absl::Status status;
    {
      absl::MutexLock lock(&fatal_mu);
      status = fatal_status;
    }
    EM_LOG_ERROR("worker: the group broke ({}); not serving, exiting", status.ToString());
    // The live streams already got the error; give them a moment to reach the router.
    server->Shutdown(absl::Seconds(1));
    serving.store(nullptr);
    loop.Stop();
    return absl::UnavailableError(absl::StrCat("worker group broke: ", status.message()));
  }
  EM_LOG_INFO("worker: signal {}: not serving, draining {} live requests for up to {} s",
              signals.signal(), loop.NumLive(), flags.grace_s);
  const int32_t cut = server->Shutdown(absl::Seconds(flags.grace_s));
  serving.store(nullptr);
  loop.Stop();
  absl::Status stop = engine::SendStop(comm);
  if (!stop.ok()) EM_LOG_WARN("worker: telling the other ranks to stop: {}", stop.ToString());
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
  app.add_option("--device", f.device,
                 "cpu | cuda | auto (auto: the CUDA backend when it is built in and a GPU is "
                 "visible, else the CPU)")
      ->capture_default_str();
  app.add_option("--cuda-device", f.cuda_device,
                 "GPU index, taken modulo the visible GPUs (-1: the local rank in the pod, "
                 "EXPERTMESH_LOCAL_RANK)")
      ->capture_default_str();
  app.add_option("--grace-s", f.grace_s, "Drain time on SIGTERM/SIGINT")->capture_default_str();
  app.add_option(
      "--ranks-per-pod", f.ranks_per_pod,
      "Ranks this pod runs, one process each (one per GPU); --rank and the "
      "LeaderWorkerSet variables then count pods (default: EXPERTMESH_RANKS_PER_POD, 1)");
  app.add_option("--comm-timeout-s", f.comm_timeout_s,
                 "Group join and collective timeout: a rank that does not take part within it "
                 "breaks the group")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::signal(SIGPIPE, SIG_IGN);
  expertmesh::server::SignalWatcher signals;
  if (!f.ranks_per_pod.has_value()) {
    if (const char* env = std::getenv("EXPERTMESH_RANKS_PER_POD"); env != nullptr) {
      f.ranks_per_pod = std::max(1, std::atoi(env));
    }
  }
  const int ranks_per_pod = f.ranks_per_pod.value_or(1);
  if (ranks_per_pod > 1 && std::getenv("EXPERTMESH_LOCAL_RANK") == nullptr) {
    return expertmesh::server::RunPodLauncher(ranks_per_pod, argv, signals, f.grace_s);
  }
  absl::Status status = expertmesh::server::Run(f, signals);
  if (!status.ok()) {
    std::fprintf(stderr, "expertmesh-worker: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
