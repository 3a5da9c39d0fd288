// Batched next-token sampling on the GPU: steps 3-4 of sampling::Sampler (worker/sampling/
// sampler.h) for fp32 logits [rows, vocab], one thread block per row:
//   greedy (temperature < kernels::kGreedyTemperature): argmax, lowest id on ties;
//   otherwise e = exp((logit - max) / T) in double, kept if e > 0 and e >= min_p, then top_k
//   (most likely first, lower id on ties), then top_p over the renormalised kept mass, then
//   one inverse-CDF draw u = CounterUniform(seed, counter) over the kept tokens in id order.
// Penalties (step 2) and logprobs (step 1) stay on the host: the caller applies penalties to
// the logits before this kernel and takes logprobs from the raw logits it copies back anyway.
// Greedy rows match the host exactly. Sampled rows rank tokens as the host does (by logit, which
// orders e; lower id on ties) and differ from it only at boundaries: the device's double exp may
// differ from the host's by an ulp (a token with e within an ulp of min_p), distinct logits the
// host's e cannot tell apart (e subnormal, or logits closer than ~1e-16 T) are ranked by logit
// where the host ranks them by id, and sums are taken in a fixed tree order instead of the
// host's sequential one, so a draw can differ when u or the top_p target lies within a few
// double ulps of a boundary. Results are deterministic.
#ifndef EXPERTMESH_KERNELS_CUDA_OPS_SAMPLING_H_
#define EXPERTMESH_KERNELS_CUDA_OPS_SAMPLING_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"
#include "kernels/sampling_row.h"

namespace expertmesh::cuda {

struct SamplingArgs {
  const float* logits = nullptr;  // [rows, vocab], row r at logits + r * logits_stride
  int64_t rows = 0;
  int64_t vocab = 0;
  int64_t logits_stride = 0;                     // elements between rows; 0 = vocab
  const kernels::SamplingRow* params = nullptr;  // [rows] in device memory
  int32_t* tokens = nullptr;                     // [rows] the sampled token ids
  void* workspace = nullptr;        // SamplingWorkspaceBytes(rows, vocab) bytes, 16-aligned
  uint32_t* error_flags = nullptr;  // kErrorSampling; may be null
};

// Scratch: per row, room for the ranking keys (u32) and ids (i32) of the whole vocabulary, where
// the survivors of top_k and top_p are compacted.
size_t SamplingWorkspaceBytes(int64_t rows, int64_t vocab);

// A row with a NaN or +inf logit, or no finite one, sets kErrorSampling and gets token 0.
// cudaErrorInvalidValue for a missing workspace or vocab >= 2^31.
cudaError_t LaunchSampling(const SamplingArgs& args, cudaStream_t stream);

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_OPS_SAMPLING_H_
