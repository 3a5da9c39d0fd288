#include "worker/comm/rendezvous_server.h"

#include <algorithm>
#include <chrono>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/grpc_token.h"
#include "expertmesh/internal/v1/rendezvous.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace expertmesh::comm {

namespace pb = ::expertmesh::internal::v1;

// Longest a single Get may block, whatever the client asks: keeps server threads bounded.
constexpr int64_t kMaxWaitMs = 10 * 60 * 1000;

class RendezvousService final : public pb::Rendezvous::Service {
 public:
  explicit RendezvousService(InternalToken token) : token_(std::move(token)) {}

  grpc::Status Set(grpc::ServerContext* context, const pb::RendezvousSetRequest* request,
                   pb::RendezvousSetResponse*) override ABSL_LOCKS_EXCLUDED(mu_) {
    if (grpc::Status auth = CheckCallToken(token_, *context, "rendezvous Set"); !auth.ok()) {
      return auth;
    }
    if (request->key().empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "rendezvous Set: empty key");
    }
    absl::MutexLock lock(&mu_);
    // First writer wins: a rank registers once, and a second registration (a stray process,
    // or someone on the network) must not redirect the others to another address.
    if (!values_.try_emplace(request->key(), request->value()).second) {
      return grpc::Status(grpc::StatusCode::ALREADY_EXISTS,
                          absl::StrCat("rendezvous Set: '", request->key(),
                                       "' is already set (two ranks with one rank number?)"));
    }
    cv_.SignalAll();
    return grpc::Status::OK;
  }

  grpc::Status Get(grpc::ServerContext* context, const pb::RendezvousGetRequest* request,
                   pb::RendezvousGetResponse* response) override ABSL_LOCKS_EXCLUDED(mu_) {
    if (grpc::Status auth = CheckCallToken(token_, *context, "rendezvous Get"); !auth.ok()) {
      return auth;
    }
    int64_t wait_ms = std::clamp<int64_t>(request->wait_ms(), 0, kMaxWaitMs);
    const absl::Time deadline = absl::FromChrono(
        std::min(std::chrono::system_clock::now() + std::chrono::milliseconds(wait_ms),
                 context->deadline()));
    absl::MutexLock lock(&mu_);
    while (true) {
      if (stopping_) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "rendezvous server shutting down");
      }
      auto it = values_.find(request->key());
      if (it != values_.end()) {
        response->set_value(it->second);
        return grpc::Status::OK;
      }
      if (wait_ms == 0) {
        return grpc::Status(grpc::StatusCode::NOT_FOUND,
                            absl::StrCat("rendezvous: key '", request->key(), "' not set"));
      }
      if (cv_.WaitWithDeadline(&mu_, deadline)) {  // true: timed out
        return grpc::Status(
            grpc::StatusCode::DEADLINE_EXCEEDED,
            absl::StrCat("rendezvous: key '", request->key(), "' not set within ", wait_ms, " ms"));
      }
    }
  }

  void Stop() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    cv_.SignalAll();
  }

 private:
  const InternalToken token_;
  absl::Mutex mu_;
  absl::CondVar cv_;  // signalled when values_ or stopping_ change
  std::unordered_map<std::string, std::string> values_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

RendezvousServer::RendezvousServer(std::unique_ptr<RendezvousService> service,
                                   std::unique_ptr<grpc::Server> server, int port)
    : service_(std::move(service)), server_(std::move(server)), port_(port) {}

RendezvousServer::~RendezvousServer() {
  service_->Stop();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  server_->Wait();
}

absl::StatusOr<std::unique_ptr<RendezvousServer>> RendezvousServer::Start(
    const std::string& listen_host, int port, InternalToken token) {
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("rendezvous: port ", port, " out of range"));
  }
  std::string address = absl::StrCat(listen_host, ":", port);
  auto service = std::make_unique<RendezvousService>(std::move(token));
  int bound = 0;
  grpc::ServerBuilder builder;
  // gRPC sets SO_REUSEPORT by default: a second leader on the same port would then silently
  // share it with the first and split the ranks between them.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound);
  builder.RegisterService(service.get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound == 0) {
    return absl::UnavailableError(
        absl::StrCat("rendezvous: cannot listen on ", address, " (in use or bad address?)"));
  }
  return std::unique_ptr<RendezvousServer>(
      new RendezvousServer(std::move(service), std::move(server), bound));
}

}  // namespace expertmesh::comm
