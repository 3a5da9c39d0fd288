// Building a ForwardBatch from per-sequence chunks (host side). The engine builds one per step
// from the scheduler's plan; tests build them by hand.
#ifndef EXPERTMESH_WORKER_MODELS_FORWARD_BATCH_H_
#define EXPERTMESH_WORKER_MODELS_FORWARD_BATCH_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/models/model.h"

namespace expertmesh::models {

// One sequence's tokens in a step: `tokens` at positions start_pos, start_pos + 1, ...; the
// cache holds positions [0, start_pos) already and its slots follow `block_table`.
struct SequenceChunk {
  std::span<const int32_t> tokens;
  int64_t start_pos = 0;
  std::span<const int32_t> block_table;
  // Which logits to produce: none, the last token's, or every token's (golden prefill checks).
  enum class Logits { kNone, kLast, kAll } logits = Logits::kLast;
  // More rows: the tokens at offsets [extra_logits_begin, extra_logits_end) of `tokens` (prompt
  // logprobs). With kLast the range must end before the last token; not allowed with kAll.
  int64_t extra_logits_begin = 0;
  int64_t extra_logits_end = 0;
};

// Lays out the chunks in order. Logit rows: first every chunk's kLast / kAll rows in chunk
// order (so the sampling rows of a step are rows 0 .. samples - 1), then every chunk's extra
// rows in chunk order. InvalidArgument (naming the chunk) for an empty chunk, a negative
// start, a block table too short for start_pos + tokens, a bad extra range, or no logits at
// all.
absl::StatusOr<ForwardBatch> MakeForwardBatch(std::span<const SequenceChunk> chunks,
                                              int32_t block_size);

}  // namespace expertmesh::models

#endif  // EXPERTMESH_WORKER_MODELS_FORWARD_BATCH_H_
