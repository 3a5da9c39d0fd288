// Where the CPU backend keeps its weights: copies packed one after another into large anonymous
// chunks that ask for transparent huge pages (madvise MADV_HUGEPAGE).
//
// Why copy at all when the checkpoint is already mmapped: a decode step streams every active
// weight once, and from the page cache it does so in 4 KiB pages, each a TLB miss and a point
// where the hardware prefetcher stops. In 2 MiB pages the same bytes take 512 times fewer TLB
// entries. The loader releases the checkpoint pages it copied from (weight_loader.cc), so the
// resident set holds each weight once.
#ifndef EXPERTMESH_KERNELS_CPU_WEIGHT_ARENA_H_
#define EXPERTMESH_KERNELS_CPU_WEIGHT_ARENA_H_

#include <cstddef>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/tensor.h"

namespace expertmesh::kernels::cpu {

// Whether the kernel will back MADV_HUGEPAGE memory with huge pages (THP "always" or "madvise").
bool TransparentHugePagesAvailable();

class WeightArena {
 public:
  // Chunks are this large, or as large as a weight that does not fit one.
  explicit WeightArena(size_t chunk_bytes = size_t{64} << 20);

  // A contiguous copy of the CPU tensor `host` in the arena, made by `pool`'s threads when given.
  // The copy keeps its chunk alive; the arena may be destroyed before it.
  // Errors: ResourceExhausted (mmap failed).
  absl::StatusOr<kernels::Tensor> Copy(const kernels::Tensor& host, ThreadPool* pool = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Bytes handed out so far (copies plus alignment padding).
  size_t bytes_used() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Chunk;
  absl::StatusOr<std::shared_ptr<Chunk>> NewChunk(size_t min_bytes);

  const size_t chunk_bytes_;
  mutable absl::Mutex mu_;
  // The chunk being filled; its `used` is guarded by mu_ too (Copy reserves its range under
  // mu_ and copies into it after unlocking).
  std::shared_ptr<Chunk> current_ ABSL_GUARDED_BY(mu_);
  size_t bytes_used_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace expertmesh::kernels::cpu

#endif  // EXPERTMESH_KERNELS_CPU_WEIGHT_ARENA_H_
