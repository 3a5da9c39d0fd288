#include "router/router_server.h"

#include "absl/strings/str_cat.h"
#include "common/grpc_credentials.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "grpcpp/health_check_service_interface.h"

namespace expertmesh::router {

absl::StatusOr<std::unique_ptr<RouterServer>> RouterServer::Start(RouterServerOptions options) {
  std::unique_ptr<RouterServer> server(new RouterServer());
  server->options_ = std::move(options);
  RouterServerOptions& o = server->options_;
  ASSIGN_OR_RETURN(std::unique_ptr<ModelContext> model,
                   ModelContext::Load(o.model_dir, o.model_name));
  server->pool_ = std::make_unique<WorkerPool>(o.pool);
  RETURN_IF_ERROR(server->pool_->Start());
  server->core_ = std::make_unique<RouterCore>(std::move(model), server->pool_.get(), o.core);

  // Before either API starts, so half a TLS pair stops both (the HTTP side checks it too).
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                   GrpcServerCredentials(o.tls_cert_file, o.tls_key_file));
  if (o.http_port >= 0) {
    HttpServerOptions http;
    http.host = o.host;
    http.port = o.http_port;
    http.tls_cert_file = o.tls_cert_file;
    http.tls_key_file = o.tls_key_file;
    http.request_timeout = o.http_request_timeout;
    http.limits = o.http_limits;
    http.admin_host = o.admin_host;
    http.admin_port = o.admin_port;
    server->http_ = std::make_unique<HttpServer>(server->core_.get(), &o.api_keys, http);
    ASSIGN_OR_RETURN(server->http_port_, server->http_->Start());
  }
  if (o.grpc_port >= 0) {
    grpc::EnableDefaultHealthCheckService(true);
    server->service_ = std::make_unique<InferenceService>(server->core_.get(), &o.api_keys);
    grpc::ServerBuilder builder;
    builder.AddListeningPort(absl::StrCat(o.host, ":", o.grpc_port), credentials,
                             &server->grpc_port_);
    builder.SetMaxReceiveMessageSize(static_cast<int>(o.core.limits.max_request_bytes));
    builder.RegisterService(server->service_.get());
    server->grpc_ = builder.BuildAndStart();
    if (server->grpc_ == nullptr || server->grpc_port_ <= 0) {
      return absl::UnavailableError(absl::StrCat("cannot bind gRPC to ", o.host, ":", o.grpc_port));
    }
  }
  return server;
}

int RouterServer::Shutdown(absl::Duration grace) {
  if (shut_down_) return 0;
  shut_down_ = true;
  if (core_ == nullptr) {  // Start failed part way.
    if (http_) http_->Stop();
    if (pool_) pool_->Stop();
    return 0;
  }
  core_->StartDraining();
  if (grpc_) {
    grpc_->GetHealthCheckService()->SetServingStatus(false);
  }
  const int cut = core_->Drain(grace);
  if (cut > 0) EM_LOG_WARN("router: cut {} streams still running after the grace period", cut);
  if (http_) http_->Stop();
  if (grpc_) grpc_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  grpc_.reset();
  service_.reset();
  pool_->Stop();
  return cut;
}

RouterServer::~RouterServer() { Shutdown(absl::ZeroDuration()); }

}  // namespace expertmesh::router
