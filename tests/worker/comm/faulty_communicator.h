// A communicator wrapper that injects one fault, for fault-tolerance tests: on rank
// `spec.rank` the `spec.call`-th collective (counting every call from 0) fails, hangs, or makes
// the rank vanish as if its process had died. Other ranks and other calls pass straight
// through to the wrapped communicator. After the fault fires, every later call on that rank
// returns the same error (a failed communicator stays failed).
#ifndef EXPERTMESH_TESTS_WORKER_COMM_FAULTY_COMMUNICATOR_H_
#define EXPERTMESH_TESTS_WORKER_COMM_FAULTY_COMMUNICATOR_H_

#include <memory>

#include "absl/time/time.h"
#include "worker/comm/communicator.h"

namespace expertmesh::comm {

struct FaultSpec {
  enum class Mode {
    // Returns UNAVAILABLE without communicating; the peers then wait in vain (and time out).
    kFail,
    // Blocks for `hang_for` without communicating, then returns DEADLINE_EXCEEDED.
    kHang,
    // Destroys the wrapped communicator (closing its connections, as a dying process does) and
    // returns UNAVAILABLE.
    kVanish,
  };
  int rank = 0;
  int call = 0;
  Mode mode = Mode::kFail;
  absl::Duration hang_for = absl::Seconds(1);
};

// Wraps `inner`; the fault fires only if inner->rank() == spec.rank.
std::unique_ptr<Communicator> CreateFaultyCommunicator(std::unique_ptr<Communicator> inner,
                                                       const FaultSpec& spec);

}  // namespace expertmesh::comm

#endif  // EXPERTMESH_TESTS_WORKER_COMM_FAULTY_COMMUNICATOR_H_
