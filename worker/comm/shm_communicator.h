// Communicator over a shared-memory segment (shm_segment.h), for the ranks of a worker group
// that run on one host: a collective costs a few memory copies and, when a peer is late, one
// futex wake-up, instead of a round of TCP messages over loopback and Gloo's I/O thread.
//
// How a collective runs: in rounds. In each round every rank writes up to one chunk of its
// contribution into its own half of the segment, publishes the round number in its futex word,
// and waits until every peer published it too; it then reads what it needs from the peers'
// halves. Each rank has two halves used alternately, so it may write the next round as soon as
// the current one is published by all: a peer that published round k has finished reading
// round k-1. One synchronisation per round, none per peer pair. Reductions: every rank sums
// all contributions itself in rank order (in fp32 for bf16, rounded once), so all ranks hold
// bit-identical results. Messages larger than a chunk take several rounds.
//
// Waiting: a short poll that yields the core (ShmOptions::spin), then futex sleeps. A sleeping rank
// wakes at least every liveness_interval to check that the peer it waits for still lives (its lock,
// see ShmSegment::Alive) and has not closed its communicator; a vanished peer gives UNAVAILABLE
// within that interval, a live but absent one DEADLINE_EXCEEDED after the timeout. The first
// rank that fails records why in the segment and wakes everyone: its peers fail at once with its
// code (they would only wait for it in vain), and every later call on any rank fails too.
#ifndef EXPERTMESH_WORKER_COMM_SHM_COMMUNICATOR_H_
#define EXPERTMESH_WORKER_COMM_SHM_COMMUNICATOR_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/comm/communicator.h"
#include "worker/comm/shm_segment.h"

namespace expertmesh::comm {

struct ShmOptions {
  // Bound on every wait for a peer (and on waiting for all ranks to attach).
  absl::Duration timeout = absl::Seconds(30);
  // How long a rank polls for its peers before it sleeps: a few microseconds with a pause
  // between polls, then with sched_yield between polls, so that on a machine with fewer cores
  // than busy threads (two ranks, their leader's gRPC and the router on 2 cores) every other
  // runnable thread gets the core first, while an idle core costs a poll a microsecond. Long
  // enough to cover the leader's work between two decode steps (sampling, streaming the token,
  // scheduling), so that the followers do not sleep and pay a wake-up per step.
  absl::Duration spin = absl::Microseconds(200);
  // How often a sleeping rank checks its peer's liveness.
  absl::Duration liveness_interval = absl::Milliseconds(20);
};

// Every rank calls this with its own attached segment (ShmSegment::Create on rank 0,
// ShmSegment::Open elsewhere). Waits until all ranks have attached, then rank 0 unlinks the
// segment's name. DEADLINE_EXCEEDED names the ranks that did not attach within the timeout;
// UNAVAILABLE if one attached and left again; INVALID_ARGUMENT for bad options.
absl::StatusOr<std::unique_ptr<Communicator>> CreateShmCommunicator(
    std::unique_ptr<ShmSegment> segment, const ShmOptions& options);

}  // namespace expertmesh::comm

#endif  // EXPERTMESH_WORKER_COMM_SHM_COMMUNICATOR_H_
