// 4-bit (kQ4) weights on the CUDA backend: what PrepareWeight uploads besides the packed bytes,
// and how ops describe a device weight's groups to the kernels (kernels/cuda/gemm/q4_gemm.h).
//
// The upload never widens: the weight keeps half a byte per element in the CPU kernels' packed
// layout (kernels/q4_layout.h), which the kernels read as it is. Its scale grid (and zero-point
// grid, for asymmetric GPTQ) is trimmed to the groups the weight touches, as fp8 block scales
// are (fp8_weight_prep.h). An act-order column order is copied to the device once; the device
// tensor keeps the host order in its BlockScales (Tensor::WithBlockScales wants it on the CPU,
// and memory accounting counts it), and the backend maps it to its device copy.
#ifndef EXPERTMESH_KERNELS_CUDA_BACKEND_Q4_WEIGHT_PREP_H_
#define EXPERTMESH_KERNELS_CUDA_BACKEND_Q4_WEIGHT_PREP_H_

#include "absl/status/statusor.h"
#include "kernels/cuda/gemm/q4_gemm.h"
#include "kernels/tensor.h"

namespace expertmesh::cuda {

struct TrimmedQ4Groups {
  kernels::Tensor scales;       // host f32 [row blocks touched, groups touched]
  kernels::Tensor zero_points;  // the same for the zero points; undefined without them
  kernels::BlockScales layout;  // block shape and offsets into the grids (grids unset)
};

// The part of `host_weight`'s scale and zero-point grids its elements use.
// REQUIRES: host_weight is a 2-D kQ4 host tensor with host block scales.
// Errors: InvalidArgument otherwise; ResourceExhausted for the host copies.
absl::StatusOr<TrimmedQ4Groups> TrimQ4Groups(const kernels::Tensor& host_weight);

// A device q4 weight's groups as the kernels take them; `device_order` is the device copy of its
// column order (null without one).
// REQUIRES: `weight` carries block scales (on the device).
Q4Groups Q4GroupsOf(const kernels::Tensor& weight, const int32_t* device_order);

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_BACKEND_Q4_WEIGHT_PREP_H_
