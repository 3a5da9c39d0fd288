#include "worker/comm/comm_util.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace expertmesh::comm {

const char* CollectiveName(Collective op) {
  switch (op) {
    case Collective::kAllReduce:
      return "AllReduce";
    case Collective::kAllGather:
      return "AllGather";
    case Collective::kReduceScatter:
      return "ReduceScatter";
    case Collective::kAllToAll:
      return "AllToAll";
    case Collective::kBroadcast:
      return "Broadcast";
    case Collective::kBroadcastBytes:
      return "BroadcastBytes";
    case Collective::kBarrier:
      return "Barrier";
  }
  return "unknown";
}
namespace {

// common/dtype.h speaks std::string_view; absl here is built without the std alias.
absl::string_view Name(DType dtype) {
  std::string_view name = DTypeName(dtype);
  return absl::string_view(name.data(), name.size());
}

absl::Status CheckWhole(absl::string_view op, absl::string_view what, size_t bytes, DType dtype) {
  size_t elem = DTypeSize(dtype);
  if (elem == 0 || bytes % elem != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": ", what, " is ", bytes, " bytes, not a whole number of ", Name(dtype), " elements"));
  }
  return absl::OkStatus();
}

bool Overlap(const std::byte* a, size_t a_size, const std::byte* b, size_t b_size) {
  if (a_size == 0 || b_size == 0) return false;
  return a < b + b_size && b < a + a_size;
}

absl::Status CheckCounts(absl::string_view what, int world_size, std::span<const int64_t> counts,
                         size_t capacity_bytes, size_t elem, absl::string_view buffer) {
  if (counts.size() != static_cast<size_t>(world_size)) {
    return absl::InvalidArgumentError(absl::StrCat("AllToAll: ", what, " has ", counts.size(),
                                                   " entries, expected world_size ", world_size));
  }
  uint64_t total = 0;
  for (size_t p = 0; p < counts.size(); ++p) {
    if (counts[p] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("AllToAll: ", what, "[", p, "] = ", counts[p], " is negative"));
    }
    total += static_cast<uint64_t>(counts[p]);
  }
  if (total * elem > capacity_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("AllToAll: ", what, " sum to ", total,
                                                   " elements (", total * elem, " bytes) but ",
                                                   buffer, " holds ", capacity_bytes, " bytes"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckReduceDType(absl::string_view op, DType dtype) {
  if (dtype != DType::kF32 && dtype != DType::kBF16) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": dtype ", Name(dtype), " not supported for reductions (F32, BF16)"));
  }
  return absl::OkStatus();
}

absl::Status CheckRoot(absl::string_view op, int world_size, int root) {
  if (root < 0 || root >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": root ", root, " out of range for world_size ", world_size));
  }
  return absl::OkStatus();
}

absl::Status CheckAllReduceArgs(std::span<const std::byte> send, std::span<std::byte> recv,
                                DType dtype) {
  if (absl::Status s = CheckReduceDType("AllReduce", dtype); !s.ok()) return s;
  if (absl::Status s = CheckWhole("AllReduce", "send", send.size(), dtype); !s.ok()) return s;
  if (send.size() != recv.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("AllReduce: send is ", send.size(), " bytes but recv is ", recv.size()));
  }
  if (send.data() != recv.data() && Overlap(send.data(), send.size(), recv.data(), recv.size())) {
    return absl::InvalidArgumentError("AllReduce: send and recv overlap without being equal");
  }
  return absl::OkStatus();
}

absl::Status CheckAllGatherArgs(int world_size, std::span<const std::byte> send,
                                std::span<std::byte> recv, DType dtype) {
  if (absl::Status s = CheckWhole("AllGather", "send", send.size(), dtype); !s.ok()) return s;
  if (recv.size() != send.size() * world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("AllGather: recv is ", recv.size(), " bytes, expected world_size ", world_size,
                     " x send ", send.size(), " = ", send.size() * world_size));
  }
  if (Overlap(send.data(), send.size(), recv.data(), recv.size())) {
    return absl::InvalidArgumentError("AllGather: send and recv overlap");
  }
  return absl::OkStatus();
}

absl::Status CheckReduceScatterArgs(int world_size, std::span<const std::byte> send,
                                    std::span<std::byte> recv, DType dtype) {
  if (absl::Status s = CheckReduceDType("ReduceScatter", dtype); !s.ok()) return s;
  if (absl::Status s = CheckWhole("ReduceScatter", "recv", recv.size(), dtype); !s.ok()) {
    return s;
  }
  if (send.size() != recv.size() * world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("ReduceScatter: send is ", send.size(), " bytes, expected world_size ",
                     world_size, " x recv ", recv.size(), " = ", recv.size() * world_size));
  }
  if (Overlap(send.data(), send.size(), recv.data(), recv.size())) {
    return absl::InvalidArgumentError("ReduceScatter: send and recv overlap");
  }
  return absl::OkStatus();
}

absl::Status CheckAllToAllArgs(int world_size, std::span<const std::byte> send,
                               std::span<const int64_t> send_counts, std::span<std::byte> recv,
                               std::span<const int64_t> recv_counts, DType dtype) {
  size_t elem = DTypeSize(dtype);
  if (elem == 0) return absl::InvalidArgumentError("AllToAll: dtype has no size");
  if (absl::Status s =
          CheckCounts("send_counts", world_size, send_counts, send.size(), elem, "send");
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckCounts("recv_counts", world_size, recv_counts, recv.size(), elem, "recv");
      !s.ok()) {
    return s;
  }
  if (Overlap(send.data(), send.size(), recv.data(), recv.size())) {
    return absl::InvalidArgumentError("AllToAll: send and recv overlap");
  }
  return absl::OkStatus();
}

absl::Status CheckBroadcastArgs(int world_size, std::span<std::byte> data, DType dtype, int root) {
  if (absl::Status s = CheckRoot("Broadcast", world_size, root); !s.ok()) return s;
  return CheckWhole("Broadcast", "data", data.size(), dtype);
}

void AccumulateF32(float* acc, const std::byte* src, size_t count, DType dtype) {
  if (dtype == DType::kF32) {
    for (size_t i = 0; i < count; ++i) {
      float v;
      std::memcpy(&v, src + i * sizeof(float), sizeof(float));
      acc[i] += v;
    }
    return;
  }
  for (size_t i = 0; i < count; ++i) {
    uint16_t bits;
    std::memcpy(&bits, src + i * sizeof(uint16_t), sizeof(uint16_t));
    acc[i] += Bf16ToFloat(bits);
  }
}

void StoreFromF32(const float* acc, std::byte* dst, size_t count, DType dtype) {
  if (dtype == DType::kF32) {
    std::memcpy(dst, acc, count * sizeof(float));
    return;
  }
  for (size_t i = 0; i < count; ++i) {
    uint16_t bits = FloatToBf16(acc[i]);
    std::memcpy(dst + i * sizeof(uint16_t), &bits, sizeof(uint16_t));
  }
}

absl::Status ErrorLatch::Check() const {
  if (first_.ok()) return first_;
  return absl::Status(first_.code(),
                      absl::StrCat("communicator broken by an earlier error (rebuild the group): ",
                                   first_.message()));
}

absl::Status ErrorLatch::Record(absl::Status status) {
  if (first_.ok() && (absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status) ||
                      absl::IsInternal(status) || absl::IsAborted(status))) {
    first_ = status;
  }
  return status;
}

}  // namespace expertmesh::comm
