#include "worker/models/shard.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace expertmesh::models {
namespace {

std::span<std::byte> Bytes(runtime::Tensor& t) {
  return {static_cast<std::byte*>(t.raw_data()), t.nbytes()};
}

}  // namespace

std::string ShardSpec::ToString() const {
  return absl::StrCat("rank ", world_rank(), "/", world_size(), " (tp ", tp_rank, "/", tp_size,
                      ", ep ", ep_rank, "/", ep_size, ")");
}

absl::StatusOr<ShardSpec::Range> ShardSpec::EvenSplit(int64_t total, int parts, int index,
                                                      std::string_view what) {
  if (parts < 1 || total % parts != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        std::string(what), " (", total, ") does not divide evenly over ", parts, " ranks"));
  }
  const int64_t per = total / parts;
  return Range{per * index, per};
}

int64_t ShardSpec::VocabRowsPerRank(int64_t vocab) const {
  const int w = world_size();
  return (vocab + w - 1) / w;
}

ShardSpec::Range ShardSpec::VocabRows(int64_t vocab) const {
  const int64_t per = VocabRowsPerRank(vocab);
  const int64_t begin = std::min<int64_t>(vocab, per * world_rank());
  return {begin, std::min<int64_t>(vocab, begin + per) - begin};
}

absl::Status ValidateShardSpec(const ShardSpec& s) {
  if (s.tp_size < 1 || s.ep_size < 1 || s.tp_rank < 0 || s.tp_rank >= s.tp_size || s.ep_rank < 0 ||
      s.ep_rank >= s.ep_size) {
    return absl::InvalidArgumentError(absl::StrCat("shard: invalid ", s.ToString()));
  }
  return absl::OkStatus();
}

absl::Status Collectives::AllReduceTp(runtime::Tensor& t) {
  if (!active() || spec_.tp_size == 1) return absl::OkStatus();
  if (spec_.ep_size > 1 && spec_.ep_rank > 0) std::memset(t.raw_data(), 0, t.nbytes());
  return AllReduceWorld(t);
}

absl::Status Collectives::AllReduceWorld(runtime::Tensor& t) {
  if (!active()) return absl::OkStatus();
  std::span<std::byte> b = Bytes(t);
  return world_->AllReduce(b, b, t.dtype());
}

absl::Status Collectives::AllGatherWorld(const runtime::Tensor& send, runtime::Tensor& recv) {
  if (!active()) {
    std::memcpy(recv.raw_data(), send.raw_data(), send.nbytes());
    return absl::OkStatus();
  }
  const std::span<const std::byte> bytes(static_cast<const std::byte*>(send.raw_data()),
                                         send.nbytes());
  return world_->AllGather(bytes, Bytes(recv), send.dtype());
}

absl::Status Collectives::AllToAllWorld(std::span<const std::byte> send,
                                        std::span<const int64_t> send_counts,
                                        std::span<std::byte> recv,
                                        std::span<const int64_t> recv_counts, DType dtype) {
  if (!active()) {
    return absl::FailedPreconditionError("shard: all-to-all in a group of one rank");
  }
  return world_->AllToAll(send, send_counts, recv, recv_counts, dtype);
}

}  // namespace expertmesh::models
