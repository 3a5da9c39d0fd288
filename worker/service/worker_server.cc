#include "worker/service/worker_server.h"

#include "absl/strings/str_cat.h"
#include "grpcpp/health_check_service_interface.h"

namespace expertmesh::server {

absl::StatusOr<std::unique_ptr<WorkerServer>> WorkerServer::Start(
    EngineLoop* loop, const WorkerServerOptions& options) {
  grpc::EnableDefaultHealthCheckService(true);
  auto service = std::make_unique<WorkerService>(loop, options.service);
  grpc::ServerBuilder builder;
  int port = 0;
  const std::string address = absl::StrCat(options.host, ":", options.port);
  builder.AddListeningPort(
      address, options.credentials ? options.credentials : grpc::InsecureServerCredentials(),
      &port);
  builder.RegisterService(service.get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("worker server: cannot listen on ", address, " (address in use?)"));
  }
  auto result = std::unique_ptr<WorkerServer>(
      new WorkerServer(loop, std::move(service), std::move(server), port));
  result->SetServing(true);
  return result;
}

WorkerServer::~WorkerServer() { Shutdown(absl::ZeroDuration()); }

void WorkerServer::SetServing(bool serving) {
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus(serving);
  health->SetServingStatus(std::string(::expertmesh::internal::v1::Worker::service_full_name()),
                           serving);
}

int32_t WorkerServer::Shutdown(absl::Duration grace) {
  if (shut_down_) return 0;
  shut_down_ = true;
  SetServing(false);
  const int32_t cut = loop_->Drain(absl::Now() + grace);
  // Streams are all finished by now; give in-flight writes a moment to reach the clients.
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  server_->Wait();
  return cut;
}

}  // namespace expertmesh::server
