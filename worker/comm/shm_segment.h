// The shared-memory segment through which the ranks of a worker group on one host exchange
// collectives (shm_communicator.h). The leader creates it under a random name in /dev/shm with a
// random cookie; every other rank opens it by name and checks the cookie, so opening succeeds
// only for a process that shares the leader's /dev/shm (same host, same IPC namespace) and was
// told the name by the group. Once every rank is attached the leader unlinks the name: the
// memory lives on while it is mapped, and a crash afterwards leaves nothing in /dev/shm.
//
// Layout (offsets from the mapping's start; every rank computes them from world size and chunk):
//   [0, 4 KiB)            ShmHeader: magic, layout, cookie, the group's abort record
//   [4 KiB, ...)          one ShmRankControl per rank, 128 bytes apart (no false sharing)
//   then, 4 KiB aligned   per rank two halves, each a ShmRoundMeta followed by `chunk` bytes
// A rank writes only its own control words and halves; it reads everyone's.
//
// Liveness: each rank holds an open-file-description lock (F_OFD_SETLK) on byte `rank` of the
// segment's file for as long as it has the segment open. The kernel drops it when the process
// dies however it dies (SIGKILL included), and unlike a pid it means the same thing in every
// PID namespace and cannot be reused, so Alive(r) asks the kernel whether the lock is still held.
#ifndef EXPERTMESH_WORKER_COMM_SHM_SEGMENT_H_
#define EXPERTMESH_WORKER_COMM_SHM_SEGMENT_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace expertmesh::comm {

// Bytes a rank contributes per round of a collective; larger messages go in several rounds.
inline constexpr size_t kShmDefaultChunkBytes = size_t{1} << 20;

// What the leader tells the other ranks: the segment's name and its cookie.
struct ShmOffer {
  std::string name;  // "/expertmesh-<32 hex digits>", as shm_open takes it
  std::array<uint8_t, 16> cookie{};

  std::string Encode() const;
  // INVALID_ARGUMENT for anything Encode did not write.
  static absl::StatusOr<ShmOffer> Decode(absl::string_view text);
};

enum class ShmRankState : uint32_t { kEmpty = 0, kAttached = 1, kLeft = 2 };

// One rank's words. `posted` counts the rounds the rank has published (a futex word: peers
// sleep on it); `waiters` counts the peers sleeping on it, so that a post issues the wake-up
// system call only when someone sleeps.
struct alignas(128) ShmRankControl {
  std::atomic<uint32_t> posted;
  std::atomic<uint32_t> waiters;
  std::atomic<uint32_t> state;  // ShmRankState
};

// Describes the round a half belongs to, so that ranks can check they run the same collective.
struct alignas(64) ShmRoundMeta {
  uint32_t op = 0;
  uint32_t dtype = 0;
  uint32_t round = 0;  // index of the round within its collective
  int32_t root = 0;
  uint64_t total = 0;  // bytes of the whole collective on this rank (op-specific)
  uint64_t extra = 0;  // op-specific (AllToAll: the most bytes this rank sends to one peer)
};

struct ShmHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t world_size;
  uint64_t chunk_bytes;
  uint64_t total_bytes;
  std::array<uint8_t, 16> cookie;
  // The first rank to break the group claims the record, writes the reason, then publishes the
  // code (an absl::StatusCode; 0 while the group is healthy) with release order.
  alignas(64) std::atomic<uint32_t> abort_claim;
  std::atomic<uint32_t> abort_code;
  int32_t abort_rank;
  char abort_reason[244];
};

class ShmSegment {
 public:
  // Creates a segment for `world_size` ranks with `chunk_bytes` per round (a multiple of 64, at
  // least 64 x world_size), reserves its memory (so a full /dev/shm is an error here, never a
  // SIGBUS later) and attaches rank 0. Errors: INVALID_ARGUMENT, RESOURCE_EXHAUSTED (no room in
  // /dev/shm), UNAVAILABLE (other system errors).
  static absl::StatusOr<std::unique_ptr<ShmSegment>> Create(int world_size, size_t chunk_bytes);

  // Opens the segment of `offer` and attaches `rank`. NOT_FOUND when there is no such segment
  // here (another host, container or IPC namespace), PERMISSION_DENIED, FAILED_PRECONDITION when
  // the cookie or the layout differ, INVALID_ARGUMENT for a rank out of range, ALREADY_EXISTS
  // when that rank is attached already.
  static absl::StatusOr<std::unique_ptr<ShmSegment>> Open(const ShmOffer& offer, int rank);

  // Unlinks the name if this process created it and it is still linked, unmaps, and closes the
  // file (which releases this rank's liveness lock).
  ~ShmSegment();
  ShmSegment(const ShmSegment&) = delete;
  ShmSegment& operator=(const ShmSegment&) = delete;

  const ShmOffer& offer() const { return offer_; }
  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  size_t chunk_bytes() const { return chunk_bytes_; }

  // Removes the name from /dev/shm (attached ranks keep the memory). Idempotent.
  void Unlink();

  ShmHeader& header() const { return *reinterpret_cast<ShmHeader*>(base_); }
  ShmRankControl& control(int r) const;
  ShmRoundMeta& meta(int r, int half) const;
  std::byte* data(int r, int half) const;

  // Whether some process still holds rank r's liveness lock (r's process has not exited and
  // not closed the segment). A system call: for waits that already sleep, not for hot loops.
  bool Alive(int r) const;

 private:
  ShmSegment(ShmOffer offer, int fd, std::byte* base, size_t size, int rank, int world_size,
             size_t chunk_bytes, bool creator);

  ShmOffer offer_;
  int fd_;
  std::byte* base_;
  size_t size_;
  int rank_;
  int world_size_;
  size_t chunk_bytes_;
  size_t halves_offset_;  // where rank 0's first half starts
  size_t half_stride_;    // bytes from one half to the next
  bool linked_;           // true while this process created the name and has not unlinked it
};

}  // namespace expertmesh::comm

#endif  // EXPERTMESH_WORKER_COMM_SHM_SEGMENT_H_
