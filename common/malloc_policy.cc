#include "common/malloc_policy.h"

#include <malloc.h>

namespace expertmesh {

bool ReturnLargeFreedBlocksToTheSystem(size_t threshold) {
  // Setting M_MMAP_THRESHOLD also turns off glibc's dynamic adjustment of it.
  return mallopt(M_MMAP_THRESHOLD, static_cast<int>(threshold)) == 1;
}

}  // namespace expertmesh
