// glibc raises its mmap threshold each time a large mmapped block is freed, after which large
// blocks come from per-thread arenas and stay there once freed: a server that handles one
// huge request per handler thread then keeps each request's peak in every thread's arena.
// Fixing the threshold keeps blocks of `threshold` bytes or more in their own mappings, which
// free() returns to the system.
#ifndef EXPERTMESH_COMMON_MALLOC_POLICY_H_
#define EXPERTMESH_COMMON_MALLOC_POLICY_H_

#include <cstddef>

namespace expertmesh {

// Returns whether glibc took the setting.
bool ReturnLargeFreedBlocksToTheSystem(size_t threshold = 1 << 20);

}  // namespace expertmesh

#endif  // EXPERTMESH_COMMON_MALLOC_POLICY_H_
