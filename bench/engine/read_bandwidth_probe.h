// The read-bandwidth probe behind engine_decode_bench's roofline: how fast this machine's
// memory delivers a buffer no cache holds, read the way the decode GEMMs read their weights.
#ifndef EXPERTMESH_BENCH_ENGINE_READ_BANDWIDTH_PROBE_H_
#define EXPERTMESH_BENCH_ENGINE_READ_BANDWIDTH_PROBE_H_

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

namespace expertmesh::bench {

// Interleaved sequential streams each probe thread reads, as a decode GEMM's 4-row strip reads
// four weight rows at once.
inline constexpr int kProbeStreams = 4;

// Size of the largest data or unified cache cpu0 sees (the LLC), 0 if unknown.
uint64_t LastLevelCacheBytes();

// Read bandwidth (bytes/s): sums a buffer well above the LLC with `threads` threads, best of
// `passes`.
class ReadBandwidthProbe {
 public:
  // Aligned to 2 MiB and in transparent huge pages where the kernel has them, as the CPU
  // backend keeps its weights (weight_arena.h): the roof is the best this memory can do. At
  // least wanted_bytes and 4x the LLC, bounded by half the available memory (bounded()).
  ReadBandwidthProbe(int threads, uint64_t wanted_bytes, uint64_t llc_bytes);

  uint64_t bytes() const { return bytes_; }
  bool bounded() const { return bounded_; }
  uint64_t llc_bytes() const { return llc_bytes_; }

  // Each pass with every prefetch variant (with AVX2: 4 KiB ahead into the L1, 4 and 16 KiB
  // ahead into the L2); the best pass counts.
  double Measure(int passes) const;

 private:
  // fn(thread, first word, word count) on each thread's contiguous share, joined.
  template <typename Fn>
  void RunThreads(Fn fn) const;

  int threads_;
  uint64_t llc_bytes_;
  uint64_t bytes_ = 0;
  size_t words_ = 0;
  bool bounded_ = false;
  std::unique_ptr<uint64_t, decltype(&std::free)> buf_{nullptr, &std::free};
};

}  // namespace expertmesh::bench

#endif  // EXPERTMESH_BENCH_ENGINE_READ_BANDWIDTH_PROBE_H_
