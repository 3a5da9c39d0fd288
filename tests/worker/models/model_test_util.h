// Helpers for forward-pass tests: make-model checkpoints in a scratch dir, and running
// sequences through a Model with hand-built batches.
#ifndef EXPERTMESH_TESTS_WORKER_MODELS_MODEL_TEST_UTIL_H_
#define EXPERTMESH_TESTS_WORKER_MODELS_MODEL_TEST_UTIL_H_

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/config/model_config.h"
#include "tests/util/shared_model.h"
#include "tools/make_model/make_model.h"
#include "worker/models/forward_batch.h"
#include "worker/models/model.h"

namespace expertmesh::models::testing {

// Writes (once, shared by all test processes) a make-model checkpoint and returns its directory.
inline absl::StatusOr<std::string> MakeTestModel(model::Architecture arch, const std::string& size,
                                                 const std::string& tag,
                                                 make_model::ShapeOverrides overrides = {}) {
  const std::string dir = std::string(EXPERTMESH_BINARY_DIR) + "/test-scratch/models/" +
                          std::string(model::ArchitectureName(arch)) + "-" + size + "-" + tag;
  make_model::MakeModelOptions options;
  options.arch = arch;
  options.size = size;
  options.overrides = overrides;
  options.out_dir = dir;
  options.seed = 7;
  return expertmesh::testing::MakeSharedModel(options);
}

// A block table of consecutive blocks starting at `first`.
inline std::vector<int32_t> Blocks(int32_t first, int32_t count) {
  std::vector<int32_t> b(count);
  for (int32_t i = 0; i < count; ++i) b[i] = first + i;
  return b;
}

// Runs one step and returns its logits [m, vocab].
inline absl::StatusOr<Tensor> RunStep(Model& m, KvCacheTensors& kv,
                                      const std::vector<SequenceChunk>& chunks) {
  absl::StatusOr<ForwardBatch> batch = MakeForwardBatch(chunks, kv.block_size);
  if (!batch.ok()) return batch.status();
  absl::StatusOr<Tensor> logits =
      Tensor::Empty(DType::kF32, {batch->logit_rows.dim(0), m.config().vocab_size});
  if (!logits.ok()) return logits.status();
  absl::Status s = m.Forward(*batch, kv, *logits);
  if (!s.ok()) return s;
  return logits;
}

}  // namespace expertmesh::models::testing

#endif  // EXPERTMESH_TESTS_WORKER_MODELS_MODEL_TEST_UTIL_H_
