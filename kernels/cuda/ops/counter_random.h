// The sampler's counter-based random stream (sampling::CounterRandom / CounterUniform in
// worker/sampling/sampler.cc), as functions callable from host and device code alike, so a GPU
// draw uses bit-identical random numbers. Tests check the two against each other.
#ifndef EXPERTMESH_KERNELS_CUDA_OPS_COUNTER_RANDOM_H_
#define EXPERTMESH_KERNELS_CUDA_OPS_COUNTER_RANDOM_H_

#include <cstdint>

#if defined(__CUDACC__)
#define EXPERTMESH_HOST_DEVICE __host__ __device__
#else
#define EXPERTMESH_HOST_DEVICE
#endif

namespace expertmesh::cuda {

EXPERTMESH_HOST_DEVICE inline uint64_t CounterMix64(uint64_t x) {  // splitmix64 finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

EXPERTMESH_HOST_DEVICE inline uint64_t CounterRandomHD(uint64_t seed, uint64_t counter) {
  return CounterMix64(CounterMix64(seed ^ 0x3c6ef372fe94f82bULL) + counter * 0x9e3779b97f4a7c15ULL);
}

// [0, 1) with 53 random bits; exact in double on both sides.
EXPERTMESH_HOST_DEVICE inline double CounterUniformHD(uint64_t seed, uint64_t counter) {
  return static_cast<double>(CounterRandomHD(seed, counter) >> 11) * 0x1.0p-53;
}

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_OPS_COUNTER_RANDOM_H_
