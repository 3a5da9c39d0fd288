// The world-of-one communicator: every collective is a copy (or nothing), so the engine runs
// the same code with and without parallelism. Checks arguments like every other transport.
#ifndef EXPERTMESH_WORKER_COMM_SINGLE_COMMUNICATOR_H_
#define EXPERTMESH_WORKER_COMM_SINGLE_COMMUNICATOR_H_

#include <memory>

#include "worker/comm/communicator.h"

namespace expertmesh::comm {

std::unique_ptr<Communicator> CreateSingleCommunicator();

}  // namespace expertmesh::comm

#endif  // EXPERTMESH_WORKER_COMM_SINGLE_COMMUNICATOR_H_
