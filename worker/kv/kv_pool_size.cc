#include "worker/kv/kv_pool_size.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/plan/model_plan.h"

namespace expertmesh::kv {

absl::StatusOr<KvPoolSize> SizeKvPool(uint64_t budget_bytes, uint64_t kv_bytes_per_token,
                                      int32_t block_size) {
  if (block_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV pool: block_size must be >= 1, got ", block_size));
  }
  if (kv_bytes_per_token == 0) {
    return absl::InvalidArgumentError("KV pool: the model caches 0 bytes per token");
  }
  KvPoolSize size;
  size.block_size = block_size;
  size.block_bytes = kv_bytes_per_token * static_cast<uint64_t>(block_size);
  const uint64_t blocks =
      std::min<uint64_t>(budget_bytes / size.block_bytes, std::numeric_limits<int32_t>::max());
  if (blocks == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV pool: budget of ", budget_bytes, " bytes holds no block of ", block_size,
                     " tokens (", size.block_bytes, " bytes); raise the KV memory budget"));
  }
  size.num_blocks = static_cast<int32_t>(blocks);
  size.pool_bytes = blocks * size.block_bytes;
  return size;
}

absl::StatusOr<KvPoolSize> SizeKvPoolForModel(const model::ModelConfig& config,
                                              const model::ParallelConfig& parallel, DType kv_dtype,
                                              uint64_t budget_bytes, int32_t block_size) {
  ASSIGN_OR_RETURN(model::RankMemoryPlan plan, model::PlanRankMemory(config, parallel, kv_dtype));
  return SizeKvPool(budget_bytes, plan.kv_bytes_per_token, block_size);
}

}  // namespace expertmesh::kv
