// splitmix64 (Steele, Lea & Flood): the one 64-bit mixer of the project, callable from host and
// device code alike. Its users depend on the exact values, so they are pinned by tests:
//  - the KV prefix-block hash that routers and workers must agree on (model/plan/kv_block_hash.h);
//  - the sampler's counter-based random stream, which a GPU draw reproduces bit for bit
//    (worker/sampling/sampler.h, kernels/cuda/ops/sampling.cu);
//  - the seeded random weights of `expertmesh make-model` (tools/make_model/prng.h).
#ifndef EXPERTMESH_COMMON_SPLITMIX64_H_
#define EXPERTMESH_COMMON_SPLITMIX64_H_

#include <cstdint>

#if defined(__CUDACC__)
#define EXPERTMESH_HOST_DEVICE __host__ __device__
#else
#define EXPERTMESH_HOST_DEVICE
#endif

namespace expertmesh {

inline constexpr uint64_t kGoldenGamma = 0x9e3779b97f4a7c15ULL;  // 2^64 / golden ratio

// The splitmix64 finaliser: a bijection on 64 bits with full avalanche.
EXPERTMESH_HOST_DEVICE constexpr uint64_t SplitMix64Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// One step of the splitmix64 generator: advances `state` and returns the next output.
EXPERTMESH_HOST_DEVICE constexpr uint64_t SplitMix64Next(uint64_t& state) {
  state += kGoldenGamma;
  return SplitMix64Mix(state);
}

// A counter-based random stream: value `counter` of the stream keyed by `seed`. Two rounds of the
// bijective mix: distinct counters never collide for one seed, and nearby seeds give unrelated
// streams. Deterministic across processes, platforms and devices.
EXPERTMESH_HOST_DEVICE constexpr uint64_t CounterRandom(uint64_t seed, uint64_t counter) {
  return SplitMix64Mix(SplitMix64Mix(seed ^ 0x3c6ef372fe94f82bULL) + counter * kGoldenGamma);
}

// CounterRandom mapped to [0, 1) with 53 random bits (exact in double on host and device).
EXPERTMESH_HOST_DEVICE constexpr double CounterUniform(uint64_t seed, uint64_t counter) {
  return static_cast<double>(CounterRandom(seed, counter) >> 11) * 0x1.0p-53;
}

}  // namespace expertmesh

#endif  // EXPERTMESH_COMMON_SPLITMIX64_H_
