#include "worker/startup/worker_run.h"

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/grpc_credentials.h"
#include "common/internal_token.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "model/config/model_config.h"
#include "worker/comm/comm_group.h"
#include "worker/comm/group_config.h"
#include "worker/engine/engine.h"
#include "worker/engine/follower.h"
#include "worker/engine/step_sync.h"
#include "worker/grammar/grammar_compiler.h"
#include "worker/models/model.h"
#include "worker/service/worker_server.h"
#include "worker/serving/engine_adapter.h"
#include "worker/serving/engine_loop.h"
#include "worker/startup/backend_select.h"
#include "worker/startup/byte_size.h"
#include "worker/startup/group_comm_select.h"

namespace expertmesh::server {

using worker::GrammarCompiler;

namespace {

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
  if (flags.quantize != "none" && flags.quantize != "fp8" && flags.quantize != "int4") {
    return absl::InvalidArgumentError(
        absl::StrCat("--quantize must be none, fp8 or int4, got ", flags.quantize));
  }
  options.quantize_fp8 = flags.quantize == "fp8";
  options.quantize_int4 = flags.quantize == "int4";
  if (flags.quantize_lm_head != "none" && flags.quantize_lm_head != "fp8") {
    return absl::InvalidArgumentError(
        absl::StrCat("--quantize-lm-head must be none or fp8, got ", flags.quantize_lm_head));
  }
  options.quantize_lm_head_fp8 = flags.quantize_lm_head == "fp8";
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
  if (choice.warn) {
    EM_LOG_WARN("worker: device {}", choice.reason);
  } else {
    EM_LOG_INFO("worker: device {}", choice.reason);
  }
  return choice;
}

// This rank's shard of the model on `backend` (the whole model in a group of one).
absl::StatusOr<std::unique_ptr<models::Model>> LoadShard(const WorkerFlags& flags,
                                                         const engine::EngineOptions& options,
                                                         kernels::Backend& backend,
                                                         const model::ParallelConfig& shard,
                                                         comm::Communicator* comm) {
  ASSIGN_OR_RETURN(model::ModelConfig config, model::LoadModelConfig(flags.model_dir));
  models::ModelOptions mo;
  mo.compute_dtype = options.compute_dtype;
  mo.quantize_fp8 = options.quantize_fp8;
  mo.quantize_int4 = options.quantize_int4;
  mo.quantize_lm_head_fp8 = options.quantize_lm_head_fp8;
  mo.max_positions = options.max_model_len > 0
                         ? options.max_model_len
                         : std::min<int64_t>(config.max_position_embeddings, 32768);
  mo.shard = shard;
  mo.comm = comm;
  EM_LOG_INFO("worker: loading {} shard of {} on {} (compute {})", shard.ToString(),
              flags.model_dir, std::string(backend.Name()), flags.compute_dtype);
  return models::LoadModel(flags.model_dir, &backend, mo);
}

bool IsLoopbackHost(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

std::string ModelName(const WorkerFlags& flags) {
  std::string name = flags.model_name;
  if (name.empty()) {
    name = std::filesystem::path(flags.model_dir).lexically_normal().filename().string();
    if (name.empty()) name = std::filesystem::path(flags.model_dir).parent_path().filename();
  }
  return name;
}

// How routers and ranks prove themselves, and the Worker API's TLS: checked before anything
// is loaded, so a bad file fails the start at once.
struct Credentials {
  InternalToken token;
  std::shared_ptr<grpc::ServerCredentials> server;
};

absl::StatusOr<Credentials> LoadCredentials(const WorkerFlags& flags) {
  Credentials c;
  ASSIGN_OR_RETURN(c.token, InternalToken::Load(flags.internal_token_file, kInternalTokenEnv));
  ASSIGN_OR_RETURN(c.server, GrpcServerCredentials(flags.tls_cert_file, flags.tls_key_file));
  if (!c.token.enabled()) {
    EM_LOG_WARN(
        "worker: no internal token (--internal-token-file or {}): anyone who reaches {} can "
        "submit, abort and read load, and join the group's rendezvous",
        kInternalTokenEnv, flags.host);
  }
  return c;
}

absl::Status RunGroup(const WorkerFlags& flags, const comm::GroupConfig& group,
                      const Credentials& credentials, SignalWatcher& signals);

}  // namespace

absl::Status RunWorker(const WorkerFlags& flags, SignalWatcher& signals) {
  ASSIGN_OR_RETURN(comm::GroupConfig group, ResolveGroup(flags, comm::ProcessEnv()));
  ASSIGN_OR_RETURN(Credentials credentials, LoadCredentials(flags));
  if (group.world_size > 1) return RunGroup(flags, group, credentials, signals);
  ASSIGN_OR_RETURN(engine::EngineOptions options, EngineOptionsFrom(flags));
  ASSIGN_OR_RETURN(DeviceChoice device, ChooseWorkerDevice(flags));
  const std::string name = ModelName(flags);
  EM_LOG_INFO("worker: KV budget {} bytes", options.kv_cache_bytes);
  ASSIGN_OR_RETURN(std::unique_ptr<kernels::Backend> backend,
                   CreateBackend(device, {.cpu_threads = flags.threads,
                                          .batch_invariant = flags.batch_invariant}));
  ASSIGN_OR_RETURN(std::unique_ptr<models::Model> model,
                   LoadShard(flags, options, *backend, model::ParallelConfig{}, nullptr));
  ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> engine,
                   engine::Engine::Create(std::move(backend), std::move(model), options));
  const int32_t kv_blocks = engine->num_kv_blocks();
  const int64_t max_len = engine->max_model_len();
  ASSIGN_OR_RETURN(std::shared_ptr<const GrammarCompiler> grammars,
                   GrammarCompiler::ForModel(flags.model_dir, engine->config()));
  if (signals.first().HasBeenNotified()) return absl::OkStatus();

  EngineLoop loop(std::make_unique<EngineAdapter>(std::move(engine), name),
                  {.max_queued = flags.max_queued});
  loop.Start();
  ASSIGN_OR_RETURN(std::unique_ptr<WorkerServer> server,
                   WorkerServer::Start(&loop, {.host = flags.host,
                                               .port = flags.port,
                                               .service = {.tp = flags.tp,
                                                           .ep = flags.ep,
                                                           .token = credentials.token,
                                                           .grammars = grammars},
                                               .credentials = credentials.server}));
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

namespace {

// A rank of a worker group of several. Every rank loads its shard of the weights; rank 0 runs
// the scheduler and the server and broadcasts each step, the others follow (follower.h).
absl::Status RunGroup(const WorkerFlags& flags, const comm::GroupConfig& group,
                      const Credentials& credentials, SignalWatcher& signals) {
  ASSIGN_OR_RETURN(engine::EngineOptions options, EngineOptionsFrom(flags));
  ASSIGN_OR_RETURN(DeviceChoice device, ChooseWorkerDevice(flags));
  const model::ParallelConfig shard{.tp = flags.tp, .ep = flags.ep, .rank = group.rank};
  EM_LOG_INFO("worker: {} of a tp {} x ep {} group ({}), joining through {}:{}", shard.ToString(),
              flags.tp, flags.ep, group.source, group.leader_host, group.leader_port);
  comm::JoinOptions join;
  join.group = group;
  join.listen_host = flags.host;
  join.token = credentials.token;
  if (group.rank == 0 && IsLoopbackHost(flags.host) && !IsLoopbackHost(group.leader_host)) {
    EM_LOG_WARN(
        "worker: the rendezvous listens on --host {}, but the other ranks look for it at {}: "
        "pass --host 0.0.0.0 (or this host's address) for a group across machines",
        flags.host, group.leader_host);
  }
  join.timeout = absl::Seconds(flags.comm_timeout_s);
  ASSIGN_OR_RETURN(join.transport, comm::ParseCommTransport(flags.comm_transport));
  join.on_leader_listening = [](int port) {
    // A launcher (expertmesh serve, tests) reads this to start the other ranks.
    std::printf("expertmesh-worker: rendezvous listening on port %d\n", port);
    std::fflush(stdout);
  };
  ASSIGN_OR_RETURN(std::unique_ptr<comm::CommGroup> comm_group, comm::CommGroup::Join(join));
  EM_LOG_INFO("worker: group transport {}", comm_group->transport_reason());
  const int cores = AvailableCores();
  const int cpu_threads = CpuThreadsForRank(flags.threads, comm_group->local_ranks(), cores);
  if (cpu_threads != flags.threads) {
    EM_LOG_INFO(
        "worker: {} ranks of the group share this host's {} cores: {} CPU thread(s) each "
        "(--threads overrides)",
        comm_group->local_ranks(), cores, cpu_threads);
  }
  ASSIGN_OR_RETURN(std::unique_ptr<kernels::Backend> backend,
                   CreateBackend(device, {.cpu_threads = cpu_threads,
                                          .batch_invariant = flags.batch_invariant}));
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
  ASSIGN_OR_RETURN(std::shared_ptr<const GrammarCompiler> grammars,
                   GrammarCompiler::ForModel(flags.model_dir, engine->config()));
  const std::string name = ModelName(flags);
  auto adapter = std::make_unique<EngineAdapter>(std::move(engine), name);
  adapter->SetIdleHook([&comm] { return engine::SendHeartbeat(comm); });

  absl::Notification fatal;
  absl::Mutex fatal_mu;  // guards fatal_status (a local: ABSL_GUARDED_BY cannot annotate it)
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
                                               .service = {.tp = flags.tp,
                                                           .ep = flags.ep,
                                                           .token = credentials.token,
                                                           .grammars = grammars},
                                               .credentials = credentials.server}));
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
