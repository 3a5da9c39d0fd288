// Seeded, fast pseudo-random numbers for make-model. Weights of a multi-GB model are generated
// element by element, so the generator must cost a few nanoseconds per value and be exactly
// reproducible across machines and compilers (std::normal_distribution is neither).
#ifndef EXPERTMESH_TOOLS_MAKE_MODEL_PRNG_H_
#define EXPERTMESH_TOOLS_MAKE_MODEL_PRNG_H_

#include <cstdint>
#include <string_view>

#include "common/splitmix64.h"

namespace expertmesh::make_model {

// SplitMix64 steps expand a seed into xoshiro state and hash names into seeds.
using ::expertmesh::SplitMix64Next;

// A seed derived from a base seed and a string (a tensor name), so that every tensor's values
// depend only on (seed, name): the same model whether written as one file or sharded.
inline uint64_t DeriveSeed(uint64_t seed, std::string_view name) {
  uint64_t h = 0xcbf29ce484222325ull ^ seed;  // FNV-1a over the name, then mixed
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return SplitMix64Next(h);
}

// xoshiro256** (Blackman & Vigna): 64-bit outputs, period 2^256 - 1.
class Xoshiro256 {
 public:
  explicit Xoshiro256(uint64_t seed) {
    for (uint64_t& word : s_) word = SplitMix64Next(seed);
  }

  uint64_t Next() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }

  // An approximately standard-normal value: the sum of four independent uniform 16-bit lanes of
  // one 64-bit output (Irwin-Hall, n = 4), centred and scaled to unit variance. Its tails stop
  // at +-3.46 sigma, which is harmless (even desirable) for random initial weights, and it costs
  // one generator step instead of a log, a sqrt and a cosine.
  float NextNormal() {
    const uint64_t r = Next();
    const int64_t sum = static_cast<int64_t>((r & 0xffff) + ((r >> 16) & 0xffff) +
                                             ((r >> 32) & 0xffff) + (r >> 48));
    // Mean 4 * 65535 / 2; standard deviation sqrt(4 * (65536^2 - 1) / 12).
    constexpr double kMean = 131070.0;
    constexpr double kInvStd = 1.0 / 37837.22724;
    return static_cast<float>((static_cast<double>(sum) - kMean) * kInvStd);
  }

  // A uniform value in [0, 1).
  double NextUniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace expertmesh::make_model

#endif  // EXPERTMESH_TOOLS_MAKE_MODEL_PRNG_H_
