// How many KV blocks a memory budget buys. The bytes per token come from the model's memory
// plan (model/plan: MLA caches the compressed latent, GQA the rank's k and v heads), so this
// file never re-derives them.
#ifndef EXPERTMESH_WORKER_KV_KV_POOL_SIZE_H_
#define EXPERTMESH_WORKER_KV_KV_POOL_SIZE_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "model/config/model_config.h"
#include "model/plan/parallel_config.h"

namespace expertmesh::kv {

struct KvPoolSize {
  int32_t num_blocks = 0;
  int32_t block_size = 0;
  uint64_t block_bytes = 0;  // block_size * kv_bytes_per_token (all layers, k and v)
  uint64_t pool_bytes = 0;   // num_blocks * block_bytes <= the budget
};

// The largest pool of `block_size`-token blocks within `budget_bytes`.
// INVALID_ARGUMENT when block_size < 1, kv_bytes_per_token is 0, or the budget holds no block
// (the message states the budget and the block size in bytes).
absl::StatusOr<KvPoolSize> SizeKvPool(uint64_t budget_bytes, uint64_t kv_bytes_per_token,
                                      int32_t block_size);

// As above with kv_bytes_per_token from model::PlanRankMemory(config, parallel, kv_dtype).
// Errors: those of PlanRankMemory and SizeKvPool.
absl::StatusOr<KvPoolSize> SizeKvPoolForModel(const model::ModelConfig& config,
                                              const model::ParallelConfig& parallel, DType kv_dtype,
                                              uint64_t budget_bytes, int32_t block_size);

}  // namespace expertmesh::kv

#endif  // EXPERTMESH_WORKER_KV_KV_POOL_SIZE_H_
