// One row's draw for Backend::SampleTokens (kernels/backend.h). A plain header (no absl, no
// CUDA) so the CUDA sampling kernel (kernels/cuda/ops/sampling.h) reads the very same struct from
// device memory that the host fills.
#ifndef EXPERTMESH_KERNELS_SAMPLING_ROW_H_
#define EXPERTMESH_KERNELS_SAMPLING_ROW_H_

#include <cstdint>

namespace expertmesh::kernels {

// Below this temperature a row is sampled greedily (argmax, lowest id on ties); as vLLM, since
// tiny temperatures overflow exp().
inline constexpr float kGreedyTemperature = 1e-5f;

// Already validated by the caller (the request's parameters, worker/sampling/sampling_params.h).
// Penalties are not here: a caller that needs them applies them to that row's logits itself
// (they need the request's history).
struct SamplingRow {
  float temperature = 1.0f;  // < kGreedyTemperature: greedy
  int32_t top_k = 0;         // <= 0 or >= vocab: off
  float top_p = 1.0f;        // in (0, 1]; 1: off
  float min_p = 0.0f;        // in [0, 1]; 0: off
  uint64_t seed = 0;
  uint64_t counter = 0;  // tokens the request has generated so far: the index of this draw
};

}  // namespace expertmesh::kernels

#endif  // EXPERTMESH_KERNELS_SAMPLING_ROW_H_
