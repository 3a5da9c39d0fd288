#include "worker/comm/shm_bootstrap.h"

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace expertmesh::comm {
namespace {

// Each rank's vote: [attached, wants shm, why not (NUL-padded text)].
constexpr size_t kVoteBytes = 160;

struct Vote {
  bool attached = false;
  bool wants = false;
  std::string why;
};

std::vector<std::byte> Encode(const Vote& v) {
  std::vector<std::byte> out(kVoteBytes, std::byte{0});
  out[0] = std::byte{v.attached};
  out[1] = std::byte{v.wants};
  std::memcpy(out.data() + 2, v.why.data(), std::min(v.why.size(), kVoteBytes - 3));
  return out;
}

Vote Decode(const std::byte* field) {
  const char* text = reinterpret_cast<const char*>(field + 2);
  return Vote{.attached = field[0] != std::byte{0},
              .wants = field[1] != std::byte{0},
              .why = std::string(text, strnlen(text, kVoteBytes - 2))};
}

}  // namespace

absl::StatusOr<ShmProbeResult> ProbeSharedMemory(Communicator& host,
                                                 const ShmProbeOptions& options) {
  const int world = host.world_size();
  const int rank = host.rank();
  std::unique_ptr<ShmSegment> segment;
  Vote mine{.wants = options.use_shm};
  std::string offer;
  if (rank == 0) {
    absl::StatusOr<std::unique_ptr<ShmSegment>> created =
        ShmSegment::Create(world, options.chunk_bytes);
    if (created.ok()) {
      segment = *std::move(created);
      offer = segment->offer().Encode();
    } else {
      mine.why = std::string(created.status().message());
    }
  }
  if (absl::Status s = host.BroadcastBytes(offer, 0); !s.ok()) return s;
  if (rank != 0) {
    absl::StatusOr<ShmOffer> decoded = ShmOffer::Decode(offer);
    if (offer.empty()) {
      mine.why = "the leader offered no segment";
    } else if (!decoded.ok()) {
      mine.why = std::string(decoded.status().message());
    } else {
      absl::StatusOr<std::unique_ptr<ShmSegment>> opened = ShmSegment::Open(*decoded, rank);
      if (opened.ok()) {
        segment = *std::move(opened);
      } else {
        mine.why = std::string(opened.status().message());
      }
    }
  }
  mine.attached = segment != nullptr;

  std::vector<std::byte> send = Encode(mine);
  std::vector<std::byte> all(kVoteBytes * world);
  if (absl::Status s = host.AllGather(send, all, DType::kU8); !s.ok()) return s;
  int attached = 0;
  int first_absent = -1, first_unwilling = -1;
  std::vector<Vote> votes;
  for (int r = 0; r < world; ++r) {
    votes.push_back(Decode(all.data() + r * kVoteBytes));
    attached += votes.back().attached;
    if (!votes.back().attached && first_absent < 0) first_absent = r;
    if (!votes.back().wants && first_unwilling < 0) first_unwilling = r;
  }

  ShmProbeResult result;
  result.local_ranks = mine.attached ? attached : 1;
  if (first_absent >= 0) {
    result.reason =
        absl::StrCat("gloo: ", attached, " of ", world, " ranks share the leader's /dev/shm; rank ",
                     first_absent, " could not attach: ", votes[first_absent].why);
  } else if (first_unwilling >= 0) {
    result.reason = absl::StrCat("gloo: all ", world, " ranks are on one host, but rank ",
                                 first_unwilling, " asked for gloo");
  }
  if (!result.reason.empty()) {
    // Rank 0's segment unlinks its name as it goes; the others just close theirs.
    segment.reset();
    if (options.require_shm) {
      return absl::FailedPreconditionError(
          absl::StrCat("shared-memory transport required, but ", result.reason));
    }
    return result;
  }
  const std::string name = segment->offer().name;
  absl::StatusOr<std::unique_ptr<Communicator>> comm =
      CreateShmCommunicator(std::move(segment), options.shm);
  if (!comm.ok()) return comm.status();
  // Proves the path end to end before anyone relies on it, and holds every rank until all are
  // done with the host communicator's all-gather above.
  if (absl::Status s = (*comm)->Barrier(); !s.ok()) return s;
  result.comm = *std::move(comm);
  result.reason = absl::StrCat("shm: all ", world, " ranks on one host share segment ", name,
                               " (unlinked once all attached; ", options.chunk_bytes >> 10,
                               " KiB per rank and round)");
  return result;
}

}  // namespace expertmesh::comm
