// WeightLoader: checkpoint tensors as kernels::Tensors in the form the forward passes use.
//
//  - bf16 / f32 tensors: zero-copy views of the mmapped safetensors (they keep the checkpoint
//    open); f16 is widened to an f32 copy (the backend's Linear takes bf16 or f32 weights).
//  - fp8 e4m3 block-quantized weights (DeepSeek-V3, Qwen3-FP8): on a backend that
//    SupportsFp8Weights, kept as published (zero-copy views of the e4m3 bytes, with their
//    `_scale_inv` grid as kernels::BlockScales; slices keep the right scales); on others, and
//    for weights derived at load (MLA's absorbed projections, GetFloats), dequantized to bf16.
//  - int4 weights (compressed-tensors pack-quantized, GPTQ; worker/models/q4_window.h): asked for
//    by their Linear's `<module>.weight` name, repacked once from the checkpoint's packing into
//    kQ4 tensors with group scales (and GPTQ zero points and act-order column order) on a
//    backend that SupportsQ4Weights; dequantized to the storage dtype on others, and to fp32 for
//    weights derived at load (GetFloats). Tensor-parallel column slices start on multiples of
//    32 (col_offset places them inside a group); act-order weights cannot be column-sliced, and
//    a fused gate | up whose act-order column orders differ (GPTQ gives weights that read the
//    same input one order) is dequantized to f32.
//  - Per-channel fp8 (compressed-tensors float-quantized): as block fp8, with one f32 scale per
//    row from `<name>_scale` [out, 1].
//  - Fused weights (gate_proj | up_proj, which Backend::SiluMul expects as one [2*inter, hidden]
//    matrix): a copy; the source pages are then released from this process (madvise) so the
//    resident set counts those bytes once.
// Every getter checks the shape against what the config implies and names the tensor and the
// directory on error (NotFound when absent, InvalidArgument for a wrong shape or dtype).
//
// Tensor-parallel ranks take slices (GetRows, GetCols, ConcatRowSlices): a row slice of a bf16
// or f32 tensor is still a zero-copy view; column slices and converted dtypes are copies.
//
// With a backend (set_backend), every tensor handed out has been through
// Backend::PrepareWeight: the CPU copies it into huge-page memory (kernels/cpu/weight_arena.h),
// or returns the host tensor itself when told not to or without transparent huge pages
// (zero-copy views stay views); a device backend copies it once into its weight memory. After a
// copy the host tensor is dropped (a checkpoint view's pages are released from the resident
// set). Without a backend, host tensors.
#ifndef EXPERTMESH_WORKER_MODELS_WEIGHT_LOADER_H_
#define EXPERTMESH_WORKER_MODELS_WEIGHT_LOADER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/tensor.h"
#include "model/config/model_config.h"
#include "model/config/weight_layout.h"
#include "model/safetensors/checkpoint.h"
#include "model/safetensors/fp8_dequant.h"
#include "worker/models/q4_window.h"
#include "worker/models/shard.h"

namespace expertmesh::models {

class WeightLoader {
 public:
  // Opens the checkpoint of `model_dir`. Errors: those of model::Checkpoint::Open.
  static absl::StatusOr<WeightLoader> Open(const std::string& model_dir,
                                           const model::ModelConfig& config);

  // The tensor `name` with exactly `shape`, as bf16 or f32 (see the file comment).
  absl::StatusOr<kernels::Tensor> Get(std::string_view name, std::vector<int64_t> shape);
  // As Get, but an undefined tensor when the checkpoint lacks `name`.
  absl::StatusOr<kernels::Tensor> GetOptional(std::string_view name, std::vector<int64_t> shape);
  // The tensor as fp32 values (any float dtype; fp8 dequantized), for derived weights.
  absl::StatusOr<std::vector<float>> GetFloats(std::string_view name, std::vector<int64_t> shape);
  // As Get, but always an f32 tensor (router correction bias).
  absl::StatusOr<kernels::Tensor> GetF32(std::string_view name, std::vector<int64_t> shape);
  // The row-wise concatenation of `names` (each [rows_i, cols]) as one [sum rows_i, cols]
  // tensor in the storage dtype.
  absl::StatusOr<kernels::Tensor> ConcatRows(const std::vector<std::string>& names,
                                             const std::vector<int64_t>& rows, int64_t cols);
  // Rows [begin, begin + count) of the tensor `name` whose full shape is `shape` (any rank).
  absl::StatusOr<kernels::Tensor> GetRows(std::string_view name, std::vector<int64_t> shape,
                                          int64_t begin, int64_t count);
  // Rows [begin, begin + count) of the 2-D tensor `name` followed by zero rows, `total_rows`
  // (>= count) in all, in the storage dtype: a copy unless total_rows == count (then GetRows).
  // For vocab-parallel tables whose slices must all have the same row count. An int4 weight (a
  // quantized lm_head) is handed out as int4 weights are, its padding rows with scale 0.
  absl::StatusOr<kernels::Tensor> GetRowsPadded(std::string_view name, std::vector<int64_t> shape,
                                                int64_t begin, int64_t count, int64_t total_rows);
  // Rows [begin, begin + count) of the 2-D plain tensor `name` (bf16, f16 or f32), quantized to
  // fp8 e4m3 in 128 x 128 blocks of the WHOLE tensor (model::QuantizeFp8Blocks, as --quantize
  // fp8 quantizes linear weights), followed by zero rows, `total_rows` in all: the lm_head of
  // --quantize-lm-head fp8 (tied or not). Every rank of a vocab-parallel group thus multiplies
  // by the values one rank would; a slice that starts inside a block row keeps one scale row
  // per weight row (block_rows 1). FailedPrecondition on a backend without fp8 kernels or for a
  // tensor the checkpoint already quantizes.
  absl::StatusOr<kernels::Tensor> GetRowsQuantizedToFp8(std::string_view name,
                                                        std::vector<int64_t> shape, int64_t begin,
                                                        int64_t count, int64_t total_rows);
  // Columns [begin, begin + count) of the 2-D tensor `name` of full shape `shape` (a copy).
  absl::StatusOr<kernels::Tensor> GetCols(std::string_view name, std::vector<int64_t> shape,
                                          int64_t begin, int64_t count);
  // Row slices of several [rows, cols] tensors, concatenated into one [sum count, cols].
  struct RowSlice {
    std::string name;
    int64_t rows = 0;  // the tensor's full row count
    int64_t begin = 0, count = 0;
  };
  absl::StatusOr<kernels::Tensor> ConcatRowSlices(const std::vector<RowSlice>& parts, int64_t cols);
  // A new tensor of the storage dtype from fp32 values (rounded to bf16 when that is the
  // storage dtype; f32 for an fp8 checkpoint, whose dequantized values bf16 cannot hold). Used
  // for weights derived at load (MLA's absorbed projections).
  absl::StatusOr<kernels::Tensor> FromFloats(const std::vector<float>& values,
                                             std::vector<int64_t> shape);

  // bf16 for bf16, f16, fp8 and int4 checkpoints, f32 for f32 ones (and for f16 ones under fp32
  // compute, set_compute_dtype): the dtype of converted copies.
  DType storage_dtype() const { return storage_dtype_; }
  // Under fp32 compute an f16 checkpoint's tensors are kept in f32, which holds every f16 value
  // (bf16 keeps 3 mantissa bits fewer: an f16 lm_head would move fp32-mode logits by ~1e-2, far
  // past the parity bounds; GPTQ releases are f16). Call before reading any tensor.
  void set_compute_dtype(DType compute) {
    if (compute == DType::kF32 && config_.torch_dtype == DType::kF16) storage_dtype_ = DType::kF32;
  }
  // Bytes of all tensors handed out (views and copies).
  uint64_t bytes_loaded() const { return bytes_loaded_; }
  const std::string& dir() const { return checkpoint_->dir(); }
  bool Contains(std::string_view name) const { return checkpoint_->Contains(name); }

  // Which part of the model this rank loads (the builders read it); a group of one by default.
  const model::ParallelConfig& shard() const { return shard_; }
  void set_shard(const model::ParallelConfig& shard) { shard_ = shard; }
  // The backend the weights are prepared for (must outlive the loader); nullptr = host tensors.
  void set_backend(kernels::Backend* backend) { backend_ = backend; }
  // From now on the linear weights a published FP8 checkpoint would quantize (the fp8 tensors of
  // model::ExpectedTensors under a 128 x 128 quantization_config) are quantized at load with
  // model::QuantizeFp8Blocks, the function make-model writes FP8 checkpoints with. A no-op for a
  // checkpoint that is already fp8. FailedPrecondition unless set_backend was given a backend
  // that SupportsFp8Weights.
  absl::Status QuantizeLinearWeightsToFp8();
  // From now on the routed experts' weights of a bf16 / f16 / f32 checkpoint are quantized at
  // load to int4 in groups of model::kInt4QuantizeGroup (model::Int4QuantizeGroupFor: 64 or 32 for
  // rows that 128 does not divide) along each row, symmetric, rounded to
  // nearest (model::QuantizeInt4Groups, the function make-model writes int4 checkpoints with).
  // FailedPrecondition unless set_backend was given a backend that SupportsQ4Weights, or for a
  // checkpoint that is already quantized.
  absl::Status QuantizeExpertWeightsToInt4();

 private:
  WeightLoader(std::shared_ptr<model::Checkpoint> checkpoint, const model::ModelConfig& config);
  absl::StatusOr<model::TensorView> View(std::string_view name,
                                         const std::vector<int64_t>& shape) const;
  // The whole tensor as a view (bf16/f32) or a converted copy, not counted in bytes_loaded.
  absl::StatusOr<kernels::Tensor> Materialize(std::string_view name,
                                              const std::vector<int64_t>& shape);
  absl::StatusOr<kernels::Tensor> Materialize(const model::TensorView& view, std::string_view name,
                                              const std::vector<int64_t>& shape);
  // Hands `host` to the backend (see the file comment); `mapped`: it is a checkpoint view.
  absl::StatusOr<kernels::Tensor> Prepare(kernels::Tensor host, bool mapped);
  // Whether fp8 weights stay fp8 (the backend multiplies them as stored) or are widened.
  bool KeepsFp8() const;
  // Whether int4 weights stay kQ4 or are widened.
  bool KeepsQ4() const;
  // The fp8 blocks of a weight with `cols` columns (per channel: 1 x cols).
  model::Fp8BlockSize Fp8Block(int64_t cols) const;
  // The f32 block-scale grid of the fp8 tensor `name` (its `<name>_scale_inv`, or `<name>_scale`
  // per channel; F32, BF16 or F16). Errors name the tensor: a missing scale, a wrong shape or
  // dtype, a NaN or infinite or negative scale.
  absl::StatusOr<kernels::BlockScales> ScalesOf(const model::TensorView& weight,
                                                std::string_view name) const;
  absl::StatusOr<kernels::Tensor> ConcatFp8RowSlices(const std::vector<RowSlice>& parts,
                                                     int64_t cols, int64_t total);
  // Whether `view` (of tensor `name`) is handed out as fp8: stored so, or quantized at load.
  bool IsFp8(const model::TensorView& view, std::string_view name) const;
  // The tensor quantized to fp8 in 128 x 128 blocks (a copy with its scales).
  absl::StatusOr<kernels::Tensor> QuantizeToFp8(const model::TensorView& view,
                                                std::string_view name,
                                                const std::vector<int64_t>& shape);
  // Writes view (any float dtype) rows into `out` of the storage dtype.
  absl::Status Convert(const model::TensorView& view, std::string_view name, void* out) const;
  // The fp8 tensor dequantized into `out` ([rows, cols] of `dtype`, kF32 or kBF16).
  absl::Status DequantizeFp8(const model::TensorView& view, std::string_view name, DType dtype,
                             void* out) const;

  // The int4 Linear whose weight is `name` ("<module>.weight"), or null for other tensors.
  const model::LinearSpec* Int4Linear(std::string_view name) const;
  // Rows x columns of an int4 weight (or one quantized at load), as kQ4 or widened.
  absl::StatusOr<kernels::Tensor> GetQ4(const model::LinearSpec& linear,
                                        const std::vector<int64_t>& shape, int64_t row_begin,
                                        int64_t rows, int64_t col_begin, int64_t cols);
  absl::StatusOr<Q4Window> ReadQ4(const model::LinearSpec& linear, int64_t row_begin, int64_t rows,
                                  int64_t col_begin, int64_t cols) const;
  // A kQ4 tensor, or the dequantized values in the storage dtype, handed to the backend.
  absl::StatusOr<kernels::Tensor> FromQ4Window(const Q4Window& window);

  std::shared_ptr<model::Checkpoint> checkpoint_;
  model::ModelConfig config_;
  DType storage_dtype_ = DType::kBF16;
  uint64_t bytes_loaded_ = 0;
  model::ParallelConfig shard_;
  kernels::Backend* backend_ = nullptr;
  // Names of the weights quantized at load (QuantizeLinearWeightsToFp8).
  absl::flat_hash_set<std::string> quantize_;
  // The int4 Linears by weight name ("<module>.weight"): those the checkpoint stores packed, and
  // those quantized at load (QuantizeExpertWeightsToInt4, format kPlain).
  absl::flat_hash_map<std::string, model::LinearSpec> int4_;
};

}  // namespace expertmesh::models

#endif  // EXPERTMESH_WORKER_MODELS_WEIGHT_LOADER_H_
