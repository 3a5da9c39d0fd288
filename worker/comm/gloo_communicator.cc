#include "worker/comm/gloo_communicator.h"

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gloo/allgather.h"
#include "gloo/allreduce.h"
#include "gloo/alltoallv.h"
#include "gloo/barrier.h"
#include "gloo/broadcast.h"
#include "gloo/math.h"
#include "gloo/rendezvous/context.h"
#include "gloo/rendezvous/store.h"
#include "gloo/transport/tcp/device.h"
#include "worker/comm/comm_util.h"
#include "worker/comm/gloo_error.h"

namespace expertmesh::comm {
namespace {

using ReduceFn = void (*)(void*, const void*, const void*, size_t);

// Gloo's buffers are non-const even for inputs it only reads.
uint8_t* Mutable(std::span<const std::byte> bytes) {
  return reinterpret_cast<uint8_t*>(const_cast<std::byte*>(bytes.data()));
}
uint8_t* Ptr(std::span<std::byte> bytes) { return reinterpret_cast<uint8_t*>(bytes.data()); }

class GlooCommunicator final : public Communicator {
 public:
  GlooCommunicator(std::shared_ptr<gloo::Context> context, absl::Duration timeout)
      : context_(std::move(context)), timeout_(absl::ToChronoMilliseconds(timeout)) {}

  int rank() const override { return context_->rank; }
  int world_size() const override { return context_->size; }
  std::string_view name() const override { return "gloo"; }

  absl::Status AllReduce(std::span<const std::byte> send, std::span<std::byte> recv, DType dtype,
                         StreamHandle) override {
    if (absl::Status s = CheckAllReduceArgs(send, recv, dtype); !s.ok()) return s;
    size_t n = send.size() / DTypeSize(dtype);
    if (dtype == DType::kF32) {
      if (send.data() != recv.data() && n > 0) std::memcpy(recv.data(), send.data(), send.size());
      return SumF32(reinterpret_cast<float*>(recv.data()), n, "AllReduce");
    }
    // Gloo has no bf16 arithmetic: sum in fp32, round once at the end.
    std::vector<float> acc(n, 0.0f);
    AccumulateF32(acc.data(), send.data(), n, dtype);
    if (absl::Status s = SumF32(acc.data(), n, "AllReduce"); !s.ok()) return s;
    StoreFromF32(acc.data(), recv.data(), n, dtype);
    return absl::OkStatus();
  }

  absl::Status AllGather(std::span<const std::byte> send, std::span<std::byte> recv, DType dtype,
                         StreamHandle) override {
    if (absl::Status s = CheckAllGatherArgs(world_size(), send, recv, dtype); !s.ok()) return s;
    return Call("AllGather", send.empty(), [&] {
      gloo::AllgatherOptions opts(context_);
      opts.setInput(Mutable(send), send.size());
      opts.setOutput(Ptr(recv), recv.size());
      opts.setTag(NextTag());
      opts.setTimeout(timeout_);
      gloo::allgather(opts);
    });
  }

  // An all-to-all of the chunks followed by a local fp32 sum in rank order, so the result is
  // deterministic and equal on every rank (and to the fake's).
  absl::Status ReduceScatter(std::span<const std::byte> send, std::span<std::byte> recv,
                             DType dtype, StreamHandle) override {
    if (absl::Status s = CheckReduceScatterArgs(world_size(), send, recv, dtype); !s.ok()) {
      return s;
    }
    size_t elem = DTypeSize(dtype);
    size_t n = recv.size() / elem;
    std::vector<int64_t> counts(world_size(), static_cast<int64_t>(n));
    std::vector<std::byte> chunks(send.size());
    if (absl::Status s = AllToAll(send, counts, chunks, counts, dtype, {}); !s.ok()) return s;
    std::vector<float> acc(n, 0.0f);
    for (int r = 0; r < world_size(); ++r) {
      AccumulateF32(acc.data(), chunks.data() + r * recv.size(), n, dtype);
    }
    StoreFromF32(acc.data(), recv.data(), n, dtype);
    return absl::OkStatus();
  }

  absl::Status AllToAll(std::span<const std::byte> send, std::span<const int64_t> send_counts,
                        std::span<std::byte> recv, std::span<const int64_t> recv_counts,
                        DType dtype, StreamHandle) override {
    if (absl::Status s =
            CheckAllToAllArgs(world_size(), send, send_counts, recv, recv_counts, dtype);
        !s.ok()) {
      return s;
    }
    // Gloo counts in elements of the buffer type; bytes keep it dtype-agnostic.
    int64_t elem = static_cast<int64_t>(DTypeSize(dtype));
    std::vector<int64_t> send_bytes, recv_bytes;
    int64_t total_send = 0, total_recv = 0;
    for (int p = 0; p < world_size(); ++p) {
      send_bytes.push_back(send_counts[p] * elem);
      recv_bytes.push_back(recv_counts[p] * elem);
      total_send += send_bytes.back();
      total_recv += recv_bytes.back();
    }
    // Gloo needs a real buffer even when nothing moves to or from this rank.
    uint8_t dummy_in = 0, dummy_out = 0;
    uint8_t* in = total_send > 0 ? Mutable(send) : &dummy_in;
    uint8_t* out = total_recv > 0 ? Ptr(recv) : &dummy_out;
    return Call("AllToAll", false, [&] {
      gloo::AlltoallvOptions opts(context_);
      opts.setInput(in, send_bytes);
      opts.setOutput(out, recv_bytes);
      opts.setTag(NextTag());
      opts.setTimeout(timeout_);
      gloo::alltoallv(opts);
    });
  }

  absl::Status Broadcast(std::span<std::byte> data, DType dtype, int root, StreamHandle) override {
    if (absl::Status s = CheckBroadcastArgs(world_size(), data, dtype, root); !s.ok()) return s;
    return BroadcastRaw(Ptr(data), data.size(), root, "Broadcast");
  }

  absl::Status BroadcastBytes(std::string& bytes, int root) override {
    if (absl::Status s = CheckRoot("BroadcastBytes", world_size(), root); !s.ok()) return s;
    int64_t size = rank() == root ? static_cast<int64_t>(bytes.size()) : 0;
    if (absl::Status s =
            BroadcastRaw(reinterpret_cast<uint8_t*>(&size), sizeof(size), root, "BroadcastBytes");
        !s.ok()) {
      return s;
    }
    if (rank() != root) bytes.resize(size);
    return BroadcastRaw(reinterpret_cast<uint8_t*>(bytes.data()), bytes.size(), root,
                        "BroadcastBytes");
  }

  absl::Status Barrier() override {
    return Call("Barrier", false, [&] {
      gloo::BarrierOptions opts(context_);
      opts.setTag(NextTag());
      opts.setTimeout(timeout_);
      gloo::barrier(opts);
    });
  }

 private:
  uint32_t NextTag() { return next_tag_++; }

  // Runs `body` unless the communicator is broken or there is nothing to move (`empty`; every
  // rank sees the same sizes, so all skip together).
  template <typename Body>
  absl::Status Call(absl::string_view op, bool empty, Body&& body) {
    if (absl::Status s = latch_.Check(); !s.ok()) return s;
    if (empty) return absl::OkStatus();
    return latch_.Record(CallGloo(absl::StrCat("gloo rank ", rank(), ": ", op), body));
  }

  absl::Status SumF32(float* data, size_t n, absl::string_view op) {
    return Call(op, n == 0, [&] {
      gloo::AllreduceOptions opts(context_);
      opts.setOutput(data, n);
      opts.setReduceFunction(static_cast<ReduceFn>(&gloo::sum<float>));
      opts.setTag(NextTag());
      opts.setTimeout(timeout_);
      gloo::allreduce(opts);
    });
  }

  absl::Status BroadcastRaw(uint8_t* data, size_t size, int root, absl::string_view op) {
    return Call(op, size == 0, [&] {
      gloo::BroadcastOptions opts(context_);
      opts.setOutput(data, size);
      opts.setRoot(root);
      opts.setTag(NextTag());
      opts.setTimeout(timeout_);
      gloo::broadcast(opts);
    });
  }

  std::shared_ptr<gloo::Context> context_;
  const std::chrono::milliseconds timeout_;
  uint32_t next_tag_ = 0;
  ErrorLatch latch_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> CreateGlooCommunicator(
    const GlooOptions& options, gloo::rendezvous::Store& store) {
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gloo: rank ", options.rank, " out of range for world_size ", options.world_size));
  }
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("gloo: timeout must be positive");
  }
  std::shared_ptr<gloo::rendezvous::Context> context;
  absl::Status s = CallGloo(
      absl::StrCat("gloo rank ", options.rank, ": connecting ", options.world_size, " ranks"), [&] {
        gloo::transport::tcp::attr attr;
        attr.hostname = options.hostname;
        auto device = gloo::transport::tcp::CreateDevice(attr);
        context = std::make_shared<gloo::rendezvous::Context>(options.rank, options.world_size);
        context->setTimeout(absl::ToChronoMilliseconds(options.timeout));
        context->connectFullMesh(store, device);
      });
  if (!s.ok()) return s;
  return std::make_unique<GlooCommunicator>(std::move(context), options.timeout);
}

}  // namespace expertmesh::comm
