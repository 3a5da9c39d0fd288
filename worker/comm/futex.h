// Waiting on a 32-bit word that another process changes: Linux futexes on a MAP_SHARED mapping
// (not the _PRIVATE flavour std::atomic::wait uses, which only wakes threads of one process).
// The kernel keys a shared futex by the mapped file and offset, so each process may map the
// segment at a different address.
#ifndef EXPERTMESH_WORKER_COMM_FUTEX_H_
#define EXPERTMESH_WORKER_COMM_FUTEX_H_

#include <atomic>
#include <cstdint>

#include "absl/time/time.h"

namespace expertmesh::comm {

static_assert(std::atomic<uint32_t>::is_always_lock_free && sizeof(std::atomic<uint32_t>) == 4,
              "futex words must be plain 32-bit atomics");

// Sleeps while *word == expected, for at most `timeout` (a spurious or early return is fine:
// callers re-check their condition). Returns at once if *word != expected.
void FutexWait(std::atomic<uint32_t>* word, uint32_t expected, absl::Duration timeout);

// Wakes every process and thread sleeping in FutexWait on `word`.
void FutexWakeAll(std::atomic<uint32_t>* word);

}  // namespace expertmesh::comm

#endif  // EXPERTMESH_WORKER_COMM_FUTEX_H_
