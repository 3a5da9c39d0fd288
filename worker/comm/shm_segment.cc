#include "worker/comm/shm_segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace expertmesh::comm {
namespace {

constexpr uint64_t kMagic = 0x31766873'6d656d78;  // "xmemshv1" little-endian
constexpr uint32_t kVersion = 1;
constexpr size_t kPage = 4096;
constexpr size_t kControlsOffset = kPage;
constexpr absl::string_view kOfferTag = "expertmesh-shm-v1";

static_assert(sizeof(ShmHeader) <= kPage);
static_assert(sizeof(ShmRankControl) == 128);
static_assert(sizeof(ShmRoundMeta) == 64);

size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }

struct Layout {
  size_t halves_offset;
  size_t half_stride;  // meta + chunk, page aligned
  size_t total;
};

Layout LayoutFor(int world_size, size_t chunk_bytes) {
  Layout l;
  l.halves_offset = RoundUp(kControlsOffset + world_size * sizeof(ShmRankControl), kPage);
  l.half_stride = RoundUp(sizeof(ShmRoundMeta) + chunk_bytes, kPage);
  l.total = l.halves_offset + 2 * static_cast<size_t>(world_size) * l.half_stride;
  return l;
}

absl::Status Errno(absl::string_view what, int err) {
  std::string message = absl::StrCat("shm: ", what, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    case ENOSPC:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::UnavailableError(message);
  }
}

absl::Status CheckChunk(int world_size, size_t chunk_bytes) {
  if (world_size < 1 || world_size > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("shm: world_size ", world_size, " not in [1, 4096]"));
  }
  if (chunk_bytes == 0 || chunk_bytes % 64 != 0 || chunk_bytes < 64 * size_t(world_size) ||
      chunk_bytes > (size_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shm: chunk of ", chunk_bytes, " bytes must be a multiple of 64, at least 64 x ",
        world_size, " ranks and at most 1 GiB"));
  }
  return absl::OkStatus();
}

// Takes the liveness lock of `rank` on byte `rank` of the file.
absl::Status LockRank(int fd, int rank) {
  struct flock fl = {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = rank;
  fl.l_len = 1;
  if (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
    if (errno == EAGAIN || errno == EACCES) {
      return absl::AlreadyExistsError(
          absl::StrCat("shm: rank ", rank, " is attached to this segment already"));
    }
    return Errno("locking the rank's byte", errno);
  }
  return absl::OkStatus();
}

}  // namespace

std::string ShmOffer::Encode() const {
  return absl::StrCat(kOfferTag, " ", name, " ",
                      absl::BytesToHexString(absl::string_view(
                          reinterpret_cast<const char*>(cookie.data()), cookie.size())));
}

absl::StatusOr<ShmOffer> ShmOffer::Decode(absl::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, ' ');
  ShmOffer offer;
  if (parts.size() != 3 || parts[0] != kOfferTag || parts[1].size() < 2 || parts[1][0] != '/' ||
      parts[1].find('/', 1) != absl::string_view::npos ||
      parts[2].size() != 2 * offer.cookie.size()) {
    return absl::InvalidArgumentError(absl::StrCat("shm: not a segment offer: '", text, "'"));
  }
  for (char c : parts[2]) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError("shm: offer cookie is not hexadecimal");
    }
  }
  offer.name = std::string(parts[1]);
  std::string cookie = absl::HexStringToBytes(parts[2]);
  std::memcpy(offer.cookie.data(), cookie.data(), offer.cookie.size());
  return offer;
}

ShmSegment::ShmSegment(ShmOffer offer, int fd, std::byte* base, size_t size, int rank,
                       int world_size, size_t chunk_bytes, bool creator)
    : offer_(std::move(offer)),
      fd_(fd),
      base_(base),
      size_(size),
      rank_(rank),
      world_size_(world_size),
      chunk_bytes_(chunk_bytes),
      halves_offset_(LayoutFor(world_size, chunk_bytes).halves_offset),
      half_stride_(LayoutFor(world_size, chunk_bytes).half_stride),
      linked_(creator) {}

absl::StatusOr<std::unique_ptr<ShmSegment>> ShmSegment::Create(int world_size, size_t chunk_bytes) {
  if (absl::Status s = CheckChunk(world_size, chunk_bytes); !s.ok()) return s;
  const Layout layout = LayoutFor(world_size, chunk_bytes);
  ShmOffer offer;
  uint8_t random[16];
  if (getrandom(random, sizeof(random), 0) != sizeof(random) ||
      getrandom(offer.cookie.data(), offer.cookie.size(), 0) !=
          static_cast<ssize_t>(offer.cookie.size())) {
    return Errno("getrandom", errno);
  }
  offer.name = absl::StrCat("/expertmesh-", absl::BytesToHexString(absl::string_view(
                                                reinterpret_cast<const char*>(random), 16)));
  // shm_open adds O_CLOEXEC: a child the worker starts does not inherit the lock.
  const int fd = shm_open(offer.name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return Errno(absl::StrCat("creating ", offer.name), errno);
  auto fail = [&](absl::Status status) {
    close(fd);
    shm_unlink(offer.name.c_str());
    return status;
  };
  // Reserve every page now: tmpfs over its size limit would otherwise kill the process with
  // SIGBUS on first touch, in the middle of a collective.
  if (int err = posix_fallocate(fd, 0, static_cast<off_t>(layout.total)); err != 0) {
    return fail(Errno(absl::StrCat("reserving ", layout.total, " bytes in /dev/shm"), err));
  }
  void* base = mmap(nullptr, layout.total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return fail(Errno("mmap", errno));
  if (absl::Status s = LockRank(fd, 0); !s.ok()) {
    munmap(base, layout.total);
    return fail(s);
  }
  // Fresh tmpfs pages are zero: every atomic starts at 0 (kEmpty, no rounds, no abort).
  auto* header = new (base) ShmHeader{};
  header->version = kVersion;
  header->world_size = static_cast<uint32_t>(world_size);
  header->chunk_bytes = chunk_bytes;
  header->total_bytes = layout.total;
  header->cookie = offer.cookie;
  header->magic = kMagic;
  std::unique_ptr<ShmSegment> segment(new ShmSegment(std::move(offer), fd,
                                                     static_cast<std::byte*>(base), layout.total, 0,
                                                     world_size, chunk_bytes, true));
  segment->control(0).state.store(static_cast<uint32_t>(ShmRankState::kAttached),
                                  std::memory_order_release);
  return segment;
}

absl::StatusOr<std::unique_ptr<ShmSegment>> ShmSegment::Open(const ShmOffer& offer, int rank) {
  const int fd = shm_open(offer.name.c_str(), O_RDWR, 0);
  if (fd < 0) return Errno(absl::StrCat("opening ", offer.name), errno);
  struct stat st = {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return Errno("fstat", err);
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < kPage) {
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat("shm: ", offer.name, " is ", size, " bytes, not a segment"));
  }
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    const int err = errno;
    close(fd);
    return Errno("mmap", err);
  }
  auto fail = [&](absl::Status status) {
    munmap(base, size);
    close(fd);
    return status;
  };
  const auto* header = static_cast<const ShmHeader*>(base);
  if (header->magic != kMagic || header->version != kVersion || header->cookie != offer.cookie) {
    return fail(absl::FailedPreconditionError(
        absl::StrCat("shm: ", offer.name, " is not the segment offered (cookie differs)")));
  }
  const int world_size = static_cast<int>(header->world_size);
  const size_t chunk_bytes = header->chunk_bytes;
  if (absl::Status s = CheckChunk(world_size, chunk_bytes); !s.ok()) return fail(s);
  if (header->total_bytes != size || LayoutFor(world_size, chunk_bytes).total != size) {
    return fail(absl::FailedPreconditionError(absl::StrCat(
        "shm: ", offer.name, " is ", size, " bytes, its header describes another layout")));
  }
  if (rank < 0 || rank >= world_size) {
    return fail(absl::InvalidArgumentError(
        absl::StrCat("shm: rank ", rank, " out of range for world_size ", world_size)));
  }
  if (absl::Status s = LockRank(fd, rank); !s.ok()) return fail(s);
  std::unique_ptr<ShmSegment> segment(new ShmSegment(offer, fd, static_cast<std::byte*>(base), size,
                                                     rank, world_size, chunk_bytes, false));
  uint32_t empty = static_cast<uint32_t>(ShmRankState::kEmpty);
  if (!segment->control(rank).state.compare_exchange_strong(
          empty, static_cast<uint32_t>(ShmRankState::kAttached), std::memory_order_acq_rel)) {
    return absl::AlreadyExistsError(
        absl::StrCat("shm: rank ", rank, " was attached to ", offer.name, " before"));
  }
  return segment;
}

ShmSegment::~ShmSegment() {
  Unlink();
  munmap(base_, size_);
  close(fd_);
}

void ShmSegment::Unlink() {
  if (!linked_) return;
  shm_unlink(offer_.name.c_str());
  linked_ = false;
}

ShmRankControl& ShmSegment::control(int r) const {
  return *reinterpret_cast<ShmRankControl*>(base_ + kControlsOffset + r * sizeof(ShmRankControl));
}

ShmRoundMeta& ShmSegment::meta(int r, int half) const {
  return *reinterpret_cast<ShmRoundMeta*>(base_ + halves_offset_ +
                                          (2 * size_t(r) + half) * half_stride_);
}

std::byte* ShmSegment::data(int r, int half) const {
  return reinterpret_cast<std::byte*>(&meta(r, half)) + sizeof(ShmRoundMeta);
}

bool ShmSegment::Alive(int r) const {
  struct flock fl = {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = r;
  fl.l_len = 1;
  // If the kernel cannot tell, assume alive: the collective's timeout still bounds the wait.
  if (fcntl(fd_, F_OFD_GETLK, &fl) != 0) return true;
  return fl.l_type != F_UNLCK;
}

}  // namespace expertmesh::comm
