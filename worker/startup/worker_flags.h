// The command line of expertmesh-worker (parsed in worker_main.cc, where every flag is listed
// with its help text).
#ifndef EXPERTMESH_WORKER_STARTUP_WORKER_FLAGS_H_
#define EXPERTMESH_WORKER_STARTUP_WORKER_FLAGS_H_

#include <cstdint>
#include <optional>
#include <string>

namespace expertmesh::server {

struct WorkerFlags {
  std::string model_dir;
  std::string model_name;
  std::string host = "127.0.0.1";
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
  std::string quantize = "none";          // none | fp8 | int4
  std::string quantize_lm_head = "none";  // none | fp8
  int threads = 0;
  // CPU: every product on one kernel whatever its token count (CpuBackendOptions::batch_invariant).
  bool batch_invariant = false;
  std::string device = "auto";
  int cuda_device = -1;
  int32_t max_queued = 1024;
  double grace_s = 30;
  double comm_timeout_s = 30;
  // auto | gloo | shm (worker/comm/comm_group.h); default: EXPERTMESH_COMM_TRANSPORT, else auto.
  std::string comm_transport = "auto";
  std::optional<int> ranks_per_pod;
  // The group's credential (common/internal_token.h); default: EXPERTMESH_INTERNAL_TOKEN.
  std::string internal_token_file;
  // PEM certificate and key: the Worker API over TLS.
  std::string tls_cert_file;
  std::string tls_key_file;
};

}  // namespace expertmesh::server

#endif  // EXPERTMESH_WORKER_STARTUP_WORKER_FLAGS_H_
