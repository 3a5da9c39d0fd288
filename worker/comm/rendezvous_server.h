// The leader's rendezvous store: a key/value map served over gRPC
// (expertmesh.internal.v1.Rendezvous) for the lifetime of the group. Ranks publish transport
// addresses (Gloo) and the leader the NCCL unique id; readers may wait for a key to appear.
#ifndef EXPERTMESH_WORKER_COMM_RENDEZVOUS_SERVER_H_
#define EXPERTMESH_WORKER_COMM_RENDEZVOUS_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace expertmesh::comm {

class RendezvousService;

class RendezvousServer {
 public:
  // Listens on listen_host:port; port 0 picks a free port (see port()). UNAVAILABLE when the
  // address cannot be bound.
  static absl::StatusOr<std::unique_ptr<RendezvousServer>> Start(const std::string& listen_host,
                                                                 int port);
  // Wakes every waiting Get (they fail with UNAVAILABLE) and stops serving.
  ~RendezvousServer();

  // The bound port.
  int port() const { return port_; }

 private:
  RendezvousServer(std::unique_ptr<RendezvousService> service, std::unique_ptr<grpc::Server> server,
                   int port);

  std::unique_ptr<RendezvousService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_;
};

}  // namespace expertmesh::comm

#endif  // EXPERTMESH_WORKER_COMM_RENDEZVOUS_SERVER_H_
