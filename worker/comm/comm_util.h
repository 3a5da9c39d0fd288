// Argument checks, fp32 accumulation and the broken-state latch shared by the communicator
// implementations, so that every transport rejects the same bad calls with the same messages.
#ifndef EXPERTMESH_WORKER_COMM_COMM_UTIL_H_
#define EXPERTMESH_WORKER_COMM_COMM_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/dtype.h"

namespace expertmesh::comm {

// The collectives of Communicator, for transports that tag or check calls (the shared-memory
// transport writes the value into its segment, so 0 stays "no call").
enum class Collective : uint32_t {
  kAllReduce = 1,
  kAllGather,
  kReduceScatter,
  kAllToAll,
  kBroadcast,
  kBroadcastBytes,
  kBarrier
};
// "AllReduce", "BroadcastBytes", ...; "unknown" for a value outside the enum.
const char* CollectiveName(Collective op);

// INVALID_ARGUMENT unless dtype is one the reductions support (kF32, kBF16).
absl::Status CheckReduceDType(absl::string_view op, DType dtype);

// Per-collective argument checks (see Communicator for the rules). `op` names the call in
// the message, e.g. "AllGather: recv is 96 bytes, expected world_size 4 x send 32 = 128".
absl::Status CheckAllReduceArgs(std::span<const std::byte> send, std::span<std::byte> recv,
                                DType dtype);
absl::Status CheckAllGatherArgs(int world_size, std::span<const std::byte> send,
                                std::span<std::byte> recv, DType dtype);
absl::Status CheckReduceScatterArgs(int world_size, std::span<const std::byte> send,
                                    std::span<std::byte> recv, DType dtype);
absl::Status CheckAllToAllArgs(int world_size, std::span<const std::byte> send,
                               std::span<const int64_t> send_counts, std::span<std::byte> recv,
                               std::span<const int64_t> recv_counts, DType dtype);
absl::Status CheckBroadcastArgs(int world_size, std::span<std::byte> data, DType dtype, int root);
absl::Status CheckRoot(absl::string_view op, int world_size, int root);

// acc[i] += value of element i of src (kF32 or kBF16), for i < count.
void AccumulateF32(float* acc, const std::byte* src, size_t count, DType dtype);
// dst[i] = acc[i] converted to dtype (bf16: round to nearest even), for i < count.
void StoreFromF32(const float* acc, std::byte* dst, size_t count, DType dtype);

// Remembers the first transport failure; afterwards the communicator refuses every call with
// that code. Not thread-safe (a communicator is used by one thread at a time).
class ErrorLatch {
 public:
  // OK while no failure was recorded; else the first failure's code, explained.
  absl::Status Check() const;
  // Records `status` when it breaks the communicator (UNAVAILABLE, DEADLINE_EXCEEDED,
  // INTERNAL, ABORTED) and returns it unchanged.
  absl::Status Record(absl::Status status);

 private:
  absl::Status first_;
};

}  // namespace expertmesh::comm

#endif  // EXPERTMESH_WORKER_COMM_COMM_UTIL_H_
