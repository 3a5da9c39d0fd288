// Constrained decoding on the GPU (kernels::Backend::MaskLogits): logits rows masked in place by
// per-row token bitmasks.
#ifndef EXPERTMESH_KERNELS_CUDA_OPS_MASK_LOGITS_H_
#define EXPERTMESH_KERNELS_CUDA_OPS_MASK_LOGITS_H_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace expertmesh::cuda {

struct MaskLogitsArgs {
  float* logits = nullptr;  // [logits_rows, vocab] f32, masked in place
  int64_t vocab = 0;
  const uint32_t* masks = nullptr;  // [num_masks, ceil(vocab / 32)]: bit t % 32 of word t / 32
  const int32_t* rows = nullptr;    // [num_masks] distinct rows of logits, in device memory
  int64_t num_masks = 0;
};

// logits[rows[i], t] = -inf where bit t of mask i is clear. The caller (Backend::MaskLogits)
// has checked the rows. cudaErrorInvalidValue for a missing pointer or vocab >= 2^31.
cudaError_t LaunchMaskLogits(const MaskLogitsArgs& args, cudaStream_t stream);

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_OPS_MASK_LOGITS_H_
