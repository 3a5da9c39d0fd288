// expertmesh-worker: one rank of a worker group. Every rank loads its shard of the model
// (tp x ep, see worker/models/shard.h); rank 0 also runs the engine loop, broadcasts each step
// to the other ranks and serves the internal Worker gRPC API to routers.
//
//   expertmesh-worker --model DIR [--port 0] [--host 127.0.0.1] [--kv-budget 2GiB] ...
//   expertmesh-worker --model DIR --tp 2 --rank R --leader HOST:PORT ...   (a group of two)
//   expertmesh-worker --model DIR --device cuda [--cuda-device N] ...     (on a GPU)
// --device cpu|cuda|auto picks the backend (backend_select.h); a group whose ranks each have a
// GPU exchanges activations over NCCL, any other group over shared memory when all its ranks
// run on one host and over Gloo otherwise (group_comm_select.h, worker/comm/comm_group.h).
// Group placement may also come from EXPERTMESH_* or LeaderWorkerSet variables
// (worker/comm/group_config.h). A group that breaks (a rank died or timed out) cannot go on:
// its ranks exit non-zero and are restarted together.
//
// The Worker API and the group's rendezvous listen on --host (default loopback: pass the pod's
// address or 0.0.0.0 where routers and other ranks must reach it). Both ask every call for the
// internal token (--internal-token-file or EXPERTMESH_INTERNAL_TOKEN) when one is set; the
// Worker API speaks TLS with --tls-cert/--tls-key. The rendezvous closes once the group formed.
//
// Prints "expertmesh-worker: listening on HOST:PORT" on stdout once it serves (port 0 picks a
// free port). SIGTERM/SIGINT: readiness NOT_SERVING at once, in-flight requests drain for
// --grace-s, then it exits; a second signal exits at once.
#include <csignal>
#include <cstdio>
#include <cstdlib>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "common/malloc_policy.h"
#include "worker/startup/pod_launcher.h"
#include "worker/startup/signal_watcher.h"
#include "worker/startup/worker_flags.h"
#include "worker/startup/worker_run.h"

int main(int argc, char** argv) {
  // Loading repacks and converts weights through large transient buffers; freed, they go back
  // to the system instead of staying in the heap beside the weights (common/malloc_policy.h).
  expertmesh::ReturnLargeFreedBlocksToTheSystem();
  expertmesh::server::WorkerFlags f;
  CLI::App app{"expertmesh-worker: one rank of a worker group (serves the internal Worker API)"};
  app.add_option("--model", f.model_dir, "Model directory (config.json + safetensors)")->required();
  app.add_option("--model-name", f.model_name, "Name in load reports (default: directory name)");
  app.add_option("--host", f.host,
                 "Address the Worker API and the group's rendezvous listen on (0.0.0.0: all)")
      ->capture_default_str();
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
  app.add_option("--quantize", f.quantize,
                 "none | fp8 | int4: quantize a bf16 checkpoint at load: fp8 = its linear "
                 "weights to fp8 (128x128 blocks), int4 = its routed experts to int4 (groups of "
                 "128, symmetric), on a backend with kernels for them")
      ->capture_default_str();
  app.add_option("--quantize-lm-head", f.quantize_lm_head,
                 "none | fp8: quantize lm_head (a copy of the embedding table when tied) to fp8 "
                 "(128x128 blocks) at load: fewer bytes per decoded token than the bf16 lm_head "
                 "published FP8 checkpoints keep, for fp8 rounding in the logits")
      ->capture_default_str();
  app.add_option("--threads", f.threads,
                 "CPU threads (0: all cores, divided among the group's ranks on this host)")
      ->capture_default_str();
  app.add_flag("--batch-invariant", f.batch_invariant,
               "CPU: multiply every product on one kernel whatever its token count, so that a "
               "token's output never depends on its batch (slower at 1-3 tokens per weight on "
               "AMX CPUs, and for q4 weights at many tokens per weight on AVX512_BF16)");
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
  app.add_option("--comm-transport", f.comm_transport,
                 "Collectives of a group: auto (shared memory when every rank is on this host, "
                 "else Gloo over TCP), gloo, or shm (fail unless all ranks share this host)")
      ->envname("EXPERTMESH_COMM_TRANSPORT")
      ->capture_default_str();
  app.add_option("--internal-token-file", f.internal_token_file,
                 "File with the group's internal token, asked of routers and ranks (default: "
                 "EXPERTMESH_INTERNAL_TOKEN; none: no check, with a warning)");
  app.add_option("--tls-cert", f.tls_cert_file, "PEM certificate: serve the Worker API over TLS");
  app.add_option("--tls-key", f.tls_key_file, "PEM private key of --tls-cert");
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
  absl::Status status = expertmesh::server::RunWorker(f, signals);
  if (!status.ok()) {
    std::fprintf(stderr, "expertmesh-worker: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
