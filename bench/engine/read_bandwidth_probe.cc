#include "bench/engine/read_bandwidth_probe.h"

#include <immintrin.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace expertmesh::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Sum of n words with 256-bit loads and eight independent accumulators, so the loop is bound by
// memory, not by the adds (a scalar loop can fall short of what the GEMMs' vector loads reach),
// and a software prefetch ahead as the GEMMs do (measured: 2-9% above the hardware prefetcher
// alone; without it the GEMMs outran their own "roof"), into the L1 or the L2 (kLocality 3 or
// 2), 4 or 16 KiB ahead: Measure takes the best, since the GEMMs prefetch into either
// (StreamingPrefetchLevel), and on Zen 4 the L2 read 10-30% faster. The n words are read as
// kProbeStreams interleaved sequential streams, 256 bytes of each in turn.
template <int kLocality, size_t kAheadBytes>
__attribute__((target("avx2"))) uint64_t SumAvx2(const uint64_t* p, size_t n) {
  constexpr size_t kPrefetchWords = kAheadBytes / sizeof(uint64_t);
  __m256i acc[8];
  for (__m256i& a : acc) a = _mm256_setzero_si256();
  const size_t per_stream = n / kProbeStreams / 32 * 32;
  for (size_t i = 0; i < per_stream; i += 32) {
    for (int stream = 0; stream < kProbeStreams; ++stream) {
      const uint64_t* q = p + stream * per_stream + i;
      // 32 words are four cache lines; prefetching past the end is harmless (it never faults).
      for (int line = 0; line < 4; ++line) {
        __builtin_prefetch(q + kPrefetchWords + 8 * line, 0, kLocality);
      }
      for (int j = 0; j < 8; ++j) {
        acc[j] = _mm256_add_epi64(acc[j],
                                  _mm256_load_si256(reinterpret_cast<const __m256i*>(q + 4 * j)));
      }
    }
  }
  for (int j = 1; j < 8; ++j) acc[0] = _mm256_add_epi64(acc[0], acc[j]);
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc[0]);
  uint64_t s = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  for (size_t i = kProbeStreams * per_stream; i < n; ++i) s += p[i];
  return s;
}

uint64_t SumScalar(const uint64_t* p, size_t n) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += p[i];
    s1 += p[i + 1];
    s2 += p[i + 2];
    s3 += p[i + 3];
  }
  for (; i < n; ++i) s0 += p[i];
  return s0 + s1 + s2 + s3;
}

// MemAvailable from /proc/meminfo in bytes, 0 if unknown.
uint64_t AvailableMemoryBytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib << 10;
  }
  return 0;
}

}  // namespace

// sysfs first (it names the level), sysconf as the fallback.
uint64_t LastLevelCacheBytes() {
  uint64_t best = 0;
  int best_level = 0;
  for (int index = 0; index < 16; ++index) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index);
    std::ifstream level_file(dir + "/level"), type_file(dir + "/type"), size_file(dir + "/size");
    int level = 0;
    std::string type, size;
    if (!(level_file >> level) || !(type_file >> type) || !(size_file >> size)) continue;
    if (type == "Instruction" || size.empty()) continue;
    uint64_t bytes = std::strtoull(size.c_str(), nullptr, 10);
    if (size.back() == 'K') bytes <<= 10;
    if (size.back() == 'M') bytes <<= 20;
    if (level > best_level || (level == best_level && bytes > best)) {
      best_level = level;
      best = bytes;
    }
  }
  if (best == 0) {
    const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE), l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    best = static_cast<uint64_t>(std::max<long>({l3, l2, 0}));
  }
  return best;
}

template <typename Fn>
void ReadBandwidthProbe::RunThreads(Fn fn) const {
  std::vector<std::thread> pool;
  for (int t = 0; t < threads_; ++t) {
    pool.emplace_back([&, t] {
      const size_t begin = words_ * t / threads_ / 32 * 32;
      const size_t end = words_ * (t + 1) / threads_ / 32 * 32;
      fn(t, buf_.get() + begin, end - begin);
    });
  }
  for (auto& th : pool) th.join();
}

ReadBandwidthProbe::ReadBandwidthProbe(int threads, uint64_t wanted_bytes, uint64_t llc_bytes)
    : threads_(threads), llc_bytes_(llc_bytes) {
  // At least 4x the LLC, so that at most a quarter of a pass can be served by the cache.
  bytes_ = std::max<uint64_t>(wanted_bytes, 4 * llc_bytes);
  const uint64_t available = AvailableMemoryBytes();
  if (available > 0 && bytes_ > available / 2) {
    bytes_ = available / 2;
    bounded_ = true;
  }
  bytes_ = std::max<uint64_t>(bytes_ >> 21, 1) << 21;
  words_ = bytes_ / sizeof(uint64_t);
  buf_ = {static_cast<uint64_t*>(std::aligned_alloc(2 << 20, bytes_)), &std::free};
  if (buf_ == nullptr) std::abort();
  (void)madvise(buf_.get(), bytes_, MADV_HUGEPAGE);
  // Each thread faults in the half it reads (the fill of 4 GiB takes seconds on one core).
  RunThreads([&](int t, uint64_t* p, size_t n) { std::fill_n(p, n, 1); });
}

double ReadBandwidthProbe::Measure(int passes) const {
  const bool avx2 = __builtin_cpu_supports("avx2");
  double best = 0;
  // Each pass three times with AVX2: prefetching 4 KiB ahead into the L1, 4 and 16 KiB
  // ahead into the L2 (the GEMMs' strips ahead reach 16 KiB: StripsAheadForBytes).
  const int variants = avx2 ? 3 : 1;
  for (int rep = 0; rep < variants * passes; ++rep) {
    std::vector<uint64_t> sums(threads_);
    const auto t0 = Clock::now();
    RunThreads([&](int t, const uint64_t* p, size_t n) {
      switch (avx2 ? rep % variants : -1) {
        case 0:
          sums[t] = SumAvx2<3, 4096>(p, n);
          break;
        case 1:
          sums[t] = SumAvx2<2, 4096>(p, n);
          break;
        case 2:
          sums[t] = SumAvx2<2, 16384>(p, n);
          break;
        default:
          sums[t] = SumScalar(p, n);
      }
    });
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (sums[0] == 42) std::puts("");  // keep the loads
    best = std::max(best, bytes_ / s);
  }
  return best;
}

}  // namespace expertmesh::bench
