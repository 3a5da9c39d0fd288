#include "worker/comm/single_communicator.h"

#include <cstring>

#include "worker/comm/comm_util.h"

namespace expertmesh::comm {
namespace {

void Copy(std::span<const std::byte> from, std::span<std::byte> to) {
  if (!from.empty() && from.data() != to.data()) std::memcpy(to.data(), from.data(), from.size());
}

class SingleCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string_view name() const override { return "single"; }

  absl::Status AllReduce(std::span<const std::byte> send, std::span<std::byte> recv, DType dtype,
                         StreamHandle) override {
    if (absl::Status s = CheckAllReduceArgs(send, recv, dtype); !s.ok()) return s;
    Copy(send, recv);
    return absl::OkStatus();
  }

  absl::Status AllGather(std::span<const std::byte> send, std::span<std::byte> recv, DType dtype,
                         StreamHandle) override {
    if (absl::Status s = CheckAllGatherArgs(1, send, recv, dtype); !s.ok()) return s;
    Copy(send, recv);
    return absl::OkStatus();
  }

  absl::Status ReduceScatter(std::span<const std::byte> send, std::span<std::byte> recv,
                             DType dtype, StreamHandle) override {
    if (absl::Status s = CheckReduceScatterArgs(1, send, recv, dtype); !s.ok()) return s;
    Copy(send, recv);
    return absl::OkStatus();
  }

  absl::Status AllToAll(std::span<const std::byte> send, std::span<const int64_t> send_counts,
                        std::span<std::byte> recv, std::span<const int64_t> recv_counts,
                        DType dtype, StreamHandle) override {
    if (absl::Status s = CheckAllToAllArgs(1, send, send_counts, recv, recv_counts, dtype);
        !s.ok()) {
      return s;
    }
    if (send_counts[0] != recv_counts[0]) {
      return absl::InvalidArgumentError(
          "AllToAll: with one rank send_counts[0] must equal recv_counts[0]");
    }
    Copy(send.first(send_counts[0] * DTypeSize(dtype)), recv);
    return absl::OkStatus();
  }

  absl::Status Broadcast(std::span<std::byte> data, DType dtype, int root, StreamHandle) override {
    return CheckBroadcastArgs(1, data, dtype, root);
  }

  absl::Status BroadcastBytes(std::string&, int root) override {
    return CheckRoot("BroadcastBytes", 1, root);
  }

  absl::Status Barrier() override { return absl::OkStatus(); }
};

}  // namespace

std::unique_ptr<Communicator> CreateSingleCommunicator() {
  return std::make_unique<SingleCommunicator>();
}

}  // namespace expertmesh::comm
