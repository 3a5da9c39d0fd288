// Client of the leader's rendezvous store, and the gloo::rendezvous::Store built on it.
#ifndef EXPERTMESH_WORKER_COMM_RENDEZVOUS_CLIENT_H_
#define EXPERTMESH_WORKER_COMM_RENDEZVOUS_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/internal_token.h"
#include "expertmesh/internal/v1/rendezvous.grpc.pb.h"
#include "gloo/rendezvous/store.h"

namespace expertmesh::comm {

// Thread-safe. Every call waits up to `connect_timeout` for the leader to be reachable (ranks
// of a group start in any order), so a rank may start before its leader.
class RendezvousClient {
 public:
  // target: "host:port" of the leader's RendezvousServer. `token` goes with every call.
  RendezvousClient(std::string target, absl::Duration connect_timeout, InternalToken token = {});
  ~RendezvousClient();

  const std::string& target() const { return target_; }

  // DEADLINE_EXCEEDED if the leader cannot be reached in time; ALREADY_EXISTS when the key is
  // set already; other gRPC failures (UNAUTHENTICATED: a wrong token) keep their code.
  absl::Status Set(const std::string& key, const std::string& value);

  // The value of `key`, waiting up to `wait` for it to be set. DEADLINE_EXCEEDED names the key
  // when it does not appear in time.
  absl::StatusOr<std::string> Get(const std::string& key, absl::Duration wait);

  // Waits until every key is set, all within one `wait`. DEADLINE_EXCEEDED names the first
  // missing key.
  absl::Status Wait(const std::vector<std::string>& keys, absl::Duration wait);

 private:
  std::string target_;
  absl::Duration connect_timeout_;
  InternalToken token_;
  std::unique_ptr<internal::v1::Rendezvous::Stub> stub_;
};

// The Store Gloo's connectFullMesh uses, with every key under `prefix` + "/". Gloo's Store
// interface has no status: failures are thrown as StoreError (gloo_error.h) carrying the
// Status, which CreateGlooCommunicator catches and returns. Hints in messages: a key whose
// last part is a number is Gloo's "address of rank N".
class GlooRendezvousStore final : public gloo::rendezvous::Store {
 public:
  GlooRendezvousStore(RendezvousClient& client, std::string prefix, absl::Duration timeout);

  void set(const std::string& key, const std::vector<char>& data) override;
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override;

 private:
  std::string Key(const std::string& key) const { return prefix_ + "/" + key; }

  RendezvousClient& client_;
  std::string prefix_;
  absl::Duration timeout_;
};

}  // namespace expertmesh::comm

#endif  // EXPERTMESH_WORKER_COMM_RENDEZVOUS_CLIENT_H_
