// The leader's rendezvous store: a key/value map served over gRPC
// (expertmesh.internal.v1.Rendezvous) while the group forms. Ranks publish their transport
// addresses (Gloo); readers may wait for a key to appear. A key is set once: a second Set of
// it is refused, so nobody can replace a rank's address with their own. With a token every
// call must carry it. CommGroup destroys the server, closing the port, once the group formed.
#ifndef EXPERTMESH_WORKER_COMM_RENDEZVOUS_SERVER_H_
#define EXPERTMESH_WORKER_COMM_RENDEZVOUS_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/internal_token.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace expertmesh::comm {

class RendezvousService;

class RendezvousServer {
 public:
  // Listens on listen_host:port; port 0 picks a free port (see port()). UNAVAILABLE when the
  // address cannot be bound. With `token` enabled, calls without it are UNAUTHENTICATED.
  static absl::StatusOr<std::unique_ptr<RendezvousServer>> Start(const std::string& listen_host,
                                                                 int port,
                                                                 InternalToken token = {});
  // Wakes every waiting Get (they fail with UNAVAILABLE), stops serving and closes the port.
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
