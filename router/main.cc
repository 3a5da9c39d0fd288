// expertmesh-router: the front door of an expertmesh cluster. Serves the OpenAI-compatible HTTP
// API and the expertmesh.v1.Inference gRPC API, and routes to worker groups.
//
//   expertmesh-router --model-dir DIR --workers host:port,host:port
//   expertmesh-router --model-dir DIR --workers dns:///workers.ns.svc:50051 --http-port 8000
//
// API keys come from --api-key-file or the EXPERTMESH_API_KEYS variable, never from a flag;
// so does the workers' internal token (--internal-token-file or EXPERTMESH_INTERNAL_TOKEN).
#include <unistd.h>

#include <csignal>
#include <cstdio>

#include "CLI/CLI.hpp"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_credentials.h"
#include "common/internal_token.h"
#include "common/logging.h"
#include "common/malloc_policy.h"
#include "router/router_server.h"

namespace {

// The handler writes the signal to a pipe that main() reads: a signal may be delivered to any
// thread (gRPC's, httplib's), so waking main with pause() would miss it.
int g_signal_pipe[2] = {-1, -1};
void OnSignal(int sig) {
  const char byte = static_cast<char>(sig);
  (void)!write(g_signal_pipe[1], &byte, 1);
}

}  // namespace

int main(int argc, char** argv) {
  // Debian's abseil checks every Mutex acquisition for lock-order cycles (a debug aid that
  // showed as the router's hottest absl symbol per streamed token); the tests keep it on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // A huge prompt's buffers go back to the system when its request ends, whichever handler
  // thread tokenized it (tests/model/tokenizer/tokenizer_memory_test.cc).
  expertmesh::ReturnLargeFreedBlocksToTheSystem();
  using expertmesh::router::RouterServerOptions;
  RouterServerOptions o;
  std::string workers;
  std::string policy = "prefix";
  std::string api_key_file;
  double poll_ms = 500, grace_s = 30, timeout_s = 0;
  CLI::App app{"expertmesh-router: OpenAI-compatible HTTP and gRPC front door"};
  app.add_option("--model-dir", o.model_dir, "Model directory (tokenizer, config)")->required();
  app.add_option("--model-name", o.model_name, "Name clients use (default: directory name)");
  app.add_option("--workers", workers,
                 "Worker group leaders: host:port list (comma-separated) or dns:///name:port")
      ->required();
  app.add_option("--host", o.host, "Address to listen on")->capture_default_str();
  app.add_option("--http-port", o.http_port, "HTTP port (0: any free port, -1: off)")
      ->capture_default_str();
  app.add_option("--grpc-port", o.grpc_port, "gRPC port (0: any free port, -1: off)")
      ->capture_default_str();
  app.add_option("--routing", policy, "prefix | least-loaded | round-robin")->capture_default_str();
  app.add_option("--poll-ms", poll_ms, "Worker health/load poll interval")->capture_default_str();
  app.add_option("--max-active", o.core.max_active, "Concurrent generations")
      ->capture_default_str();
  app.add_option("--max-queued", o.core.max_queued, "Requests waiting for a slot before 429")
      ->capture_default_str();
  app.add_option("--max-group-queue", o.pool.routing.max_group_queue,
                 "A group with this many queued requests is overloaded")
      ->capture_default_str();
  app.add_option("--max-request-bytes", o.core.limits.max_request_bytes, "Body size limit")
      ->capture_default_str();
  app.add_option("--max-prompt-tokens", o.core.limits.max_prompt_tokens,
                 "Prompt limit (0: context length)")
      ->capture_default_str();
  app.add_option("--max-tokens-cap", o.core.limits.max_tokens_cap, "max_tokens limit (0: none)")
      ->capture_default_str();
  app.add_option("--request-timeout-s", timeout_s, "HTTP request time limit (0: none)");
  app.add_option("--api-key-file", api_key_file, "File with API keys, one per line");
  app.add_option("--tls-cert", o.tls_cert_file, "PEM certificate (enables TLS on both APIs)");
  app.add_option("--tls-key", o.tls_key_file, "PEM private key");
  std::string internal_token_file, worker_ca;
  app.add_option("--internal-token-file", internal_token_file,
                 "File with the worker groups' internal token (default: "
                 "EXPERTMESH_INTERNAL_TOKEN; none: workers must not ask for one)");
  app.add_option("--worker-ca", worker_ca,
                 "PEM CA certificate(s): reach the workers over TLS, trusting only these");
  app.add_option("--worker-tls-server-name", o.pool.connect.tls_server_name,
                 "Name the workers' certificates carry (default: the host dialled)");
  app.add_option("--admin-host", o.admin_host,
                 "Address of the admin listener (/metrics and probes, no API key)")
      ->capture_default_str();
  app.add_option("--admin-port", o.admin_port, "Admin HTTP port (0: any free port, -1: off)")
      ->capture_default_str();
  app.add_option("--max-connections", o.http_limits.max_connections, "Open HTTP connections")
      ->capture_default_str();
  app.add_option("--max-connections-per-client", o.http_limits.max_connections_per_client,
                 "Open HTTP connections from one address (0: no cap; use 0 behind a proxy)")
      ->capture_default_str();
  double head_timeout_s = absl::ToDoubleSeconds(o.http_limits.head_timeout);
  app.add_option("--http-head-timeout-s", head_timeout_s,
                 "Time a client has to send a request's headers")
      ->capture_default_str();
  bool shared_prefix_cache = false;
  app.add_flag("--shared-prefix-cache", shared_prefix_cache,
               "One prefix cache for all API keys (default: one per key, so no client can probe "
               "another's prompts through cache hits)");
  app.add_option("--grace-s", grace_s, "Drain time on SIGTERM/SIGINT")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "expertmesh-router: %s\n", s.ToString().c_str());
    return 1;
  };
  for (absl::string_view w : absl::StrSplit(workers, ',', absl::SkipWhitespace())) {
    o.pool.targets.emplace_back(w);
  }
  absl::StatusOr<expertmesh::router::RoutingMode> mode =
      expertmesh::router::ParseRoutingMode(policy);
  if (!mode.ok()) return fail(mode.status());
  o.pool.routing.mode = *mode;
  o.pool.poll_interval = absl::Milliseconds(poll_ms);
  if (timeout_s > 0) o.http_request_timeout = absl::Seconds(timeout_s);
  o.http_limits.head_timeout = absl::Seconds(head_timeout_s);
  absl::StatusOr<expertmesh::router::ApiKeys> keys =
      expertmesh::router::ApiKeys::Load(api_key_file, "EXPERTMESH_API_KEYS");
  if (!keys.ok()) return fail(keys.status());
  o.api_keys = *std::move(keys);
  o.api_keys.set_shared_prefix_cache(shared_prefix_cache);
  absl::StatusOr<expertmesh::InternalToken> token =
      expertmesh::InternalToken::Load(internal_token_file, expertmesh::kInternalTokenEnv);
  if (!token.ok()) return fail(token.status());
  o.pool.connect.token = *std::move(token);
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> worker_credentials =
      expertmesh::GrpcChannelCredentials(worker_ca);
  if (!worker_credentials.ok()) return fail(worker_credentials.status());
  o.pool.connect.credentials = *std::move(worker_credentials);

  std::signal(SIGPIPE, SIG_IGN);
  if (pipe(g_signal_pipe) != 0) return fail(absl::InternalError("pipe() failed"));
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  absl::StatusOr<std::unique_ptr<expertmesh::router::RouterServer>> server =
      expertmesh::router::RouterServer::Start(o);
  if (!server.ok()) return fail(server.status());
  const bool tls = !o.tls_cert_file.empty();
  std::printf("expertmesh-router: model %s, %zu worker target(s), %s routing\n",
              (*server)->core().model().description().name.c_str(), o.pool.targets.size(),
              policy.c_str());
  if ((*server)->http_port() > 0) {
    std::printf("expertmesh-router: HTTP listening on %s://%s:%d\n", tls ? "https" : "http",
                o.host.c_str(), (*server)->http_port());
  }
  if ((*server)->admin_port() > 0) {
    std::printf("expertmesh-router: admin HTTP (/metrics, probes) on http://%s:%d\n",
                o.admin_host.c_str(), (*server)->admin_port());
  }
  if ((*server)->grpc_port() > 0) {
    std::printf("expertmesh-router: gRPC listening on %s:%d%s\n", o.host.c_str(),
                (*server)->grpc_port(), tls ? " (TLS)" : "");
  }
  std::fflush(stdout);
  char signal = 0;
  while (read(g_signal_pipe[0], &signal, 1) != 1) {
  }
  EM_LOG_INFO("router: signal {}, draining for up to {} s", static_cast<int>(signal), grace_s);
  (*server)->Shutdown(absl::Seconds(grace_s));
  std::printf("expertmesh-router: stopped\n");
  return 0;
}
