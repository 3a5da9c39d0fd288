#include "tests/worker/comm/faulty_communicator.h"

#include <optional>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"

namespace expertmesh::comm {
namespace {

class FaultyCommunicator final : public Communicator {
 public:
  FaultyCommunicator(std::unique_ptr<Communicator> inner, const FaultSpec& spec)
      : inner_(std::move(inner)),
        spec_(spec),
        rank_(inner_->rank()),
        world_(inner_->world_size()) {}

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  std::string_view name() const override { return "faulty"; }

  absl::Status AllReduce(std::span<const std::byte> send, std::span<std::byte> recv, DType dtype,
                         StreamHandle stream) override {
    if (auto fault = MaybeFault("AllReduce")) return *fault;
    return inner_->AllReduce(send, recv, dtype, stream);
  }
  absl::Status AllGather(std::span<const std::byte> send, std::span<std::byte> recv, DType dtype,
                         StreamHandle stream) override {
    if (auto fault = MaybeFault("AllGather")) return *fault;
    return inner_->AllGather(send, recv, dtype, stream);
  }
  absl::Status ReduceScatter(std::span<const std::byte> send, std::span<std::byte> recv,
                             DType dtype, StreamHandle stream) override {
    if (auto fault = MaybeFault("ReduceScatter")) return *fault;
    return inner_->ReduceScatter(send, recv, dtype, stream);
  }
  absl::Status AllToAll(std::span<const std::byte> send, std::span<const int64_t> send_counts,
                        std::span<std::byte> recv, std::span<const int64_t> recv_counts,
                        DType dtype, StreamHandle stream) override {
    if (auto fault = MaybeFault("AllToAll")) return *fault;
    return inner_->AllToAll(send, send_counts, recv, recv_counts, dtype, stream);
  }
  absl::Status Broadcast(std::span<std::byte> data, DType dtype, int root,
                         StreamHandle stream) override {
    if (auto fault = MaybeFault("Broadcast")) return *fault;
    return inner_->Broadcast(data, dtype, root, stream);
  }
  absl::Status BroadcastBytes(std::string& bytes, int root) override {
    if (auto fault = MaybeFault("BroadcastBytes")) return *fault;
    return inner_->BroadcastBytes(bytes, root);
  }
  absl::Status Barrier() override {
    if (auto fault = MaybeFault("Barrier")) return *fault;
    return inner_->Barrier();
  }

 private:
  // The injected result for this call, or nullopt to pass it through.
  std::optional<absl::Status> MaybeFault(absl::string_view op) {
    int call = calls_++;
    // Like a real failure, an injected one breaks this rank's communicator for good.
    if (!fired_.ok()) return fired_;
    if (rank_ != spec_.rank || call != spec_.call) return std::nullopt;
    std::string what = absl::StrCat("injected fault in ", op, " #", call, " on rank ", rank_);
    switch (spec_.mode) {
      case FaultSpec::Mode::kFail:
        fired_ = absl::UnavailableError(what);
        break;
      case FaultSpec::Mode::kHang:
        // Simulates a stuck rank, not synchronisation: nothing waits for this sleep to end.
        std::this_thread::sleep_for(absl::ToChronoNanoseconds(spec_.hang_for));
        fired_ = absl::DeadlineExceededError(what);
        break;
      case FaultSpec::Mode::kVanish:
        inner_.reset();
        fired_ = absl::UnavailableError(what);
        break;
    }
    return fired_;
  }

  std::unique_ptr<Communicator> inner_;
  const FaultSpec spec_;
  const int rank_;
  const int world_;
  int calls_ = 0;
  absl::Status fired_;
};

}  // namespace

std::unique_ptr<Communicator> CreateFaultyCommunicator(std::unique_ptr<Communicator> inner,
                                                       const FaultSpec& spec) {
  return std::make_unique<FaultyCommunicator>(std::move(inner), spec);
}

}  // namespace expertmesh::comm
