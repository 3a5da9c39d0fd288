#include "worker/models/forward_batch.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace expertmesh::models {

absl::StatusOr<ForwardBatch> MakeForwardBatch(std::span<const SequenceChunk> chunks,
                                              int32_t block_size) {
  if (chunks.empty()) return absl::InvalidArgumentError("forward batch: no sequences");
  if (block_size < 1) return absl::InvalidArgumentError("forward batch: block_size < 1");
  int64_t n = 0, m = 0, max_blocks = 1;
  for (size_t s = 0; s < chunks.size(); ++s) {
    const SequenceChunk& c = chunks[s];
    const int64_t len = c.start_pos + static_cast<int64_t>(c.tokens.size());
    if (c.tokens.empty() || c.start_pos < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("forward batch: sequence ", s, " has no tokens or a negative start"));
    }
    if (static_cast<int64_t>(c.block_table.size()) * block_size < len) {
      return absl::InvalidArgumentError(absl::StrCat(
          "forward batch: sequence ", s, " needs ", len, " slots but its block table has ",
          c.block_table.size(), " blocks of ", block_size));
    }
    const int64_t q = static_cast<int64_t>(c.tokens.size());
    const int64_t extra = c.extra_logits_end - c.extra_logits_begin;
    const int64_t extra_limit = c.logits == SequenceChunk::Logits::kLast ? q - 1 : q;
    if (extra != 0 && (extra < 0 || c.extra_logits_begin < 0 || c.extra_logits_end > extra_limit ||
                       c.logits == SequenceChunk::Logits::kAll)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "forward batch: sequence ", s, " has extra logit rows [", c.extra_logits_begin, ", ",
          c.extra_logits_end, ") outside its ", q, " tokens or overlapping its other rows"));
    }
    n += q;
    m += extra + (c.logits == SequenceChunk::Logits::kAll    ? q
                  : c.logits == SequenceChunk::Logits::kLast ? 1
                                                             : 0);
    max_blocks = std::max<int64_t>(max_blocks, static_cast<int64_t>(c.block_table.size()));
  }
  if (m == 0) return absl::InvalidArgumentError("forward batch: no sequence wants logits");
  const int64_t seqs = static_cast<int64_t>(chunks.size());
  ForwardBatch b;
  ASSIGN_OR_RETURN(b.token_ids, Tensor::Empty(DType::kI32, {n}));
  ASSIGN_OR_RETURN(b.positions, Tensor::Empty(DType::kI32, {n}));
  ASSIGN_OR_RETURN(b.slot_mapping, Tensor::Empty(DType::kI32, {n}));
  ASSIGN_OR_RETURN(b.logit_rows, Tensor::Empty(DType::kI32, {m}));
  ASSIGN_OR_RETURN(b.attention.query_start, Tensor::Empty(DType::kI32, {seqs + 1}));
  ASSIGN_OR_RETURN(b.attention.seq_lens, Tensor::Empty(DType::kI32, {seqs}));
  ASSIGN_OR_RETURN(b.attention.block_tables, Tensor::Zeros(DType::kI32, {seqs, max_blocks}));
  int32_t* ids = b.token_ids.data<int32_t>();
  int32_t* pos = b.positions.data<int32_t>();
  int32_t* slots = b.slot_mapping.data<int32_t>();
  int32_t* rows = b.logit_rows.data<int32_t>();
  int32_t* qs = b.attention.query_start.data<int32_t>();
  int32_t* lens = b.attention.seq_lens.data<int32_t>();
  int32_t* tables = b.attention.block_tables.data<int32_t>();
  int64_t t = 0, r = 0;
  for (int64_t s = 0; s < seqs; ++s) {
    const SequenceChunk& c = chunks[s];
    qs[s] = static_cast<int32_t>(t);
    const int64_t q = static_cast<int64_t>(c.tokens.size());
    for (int64_t i = 0; i < q; ++i, ++t) {
      const int64_t p = c.start_pos + i;
      ids[t] = c.tokens[i];
      pos[t] = static_cast<int32_t>(p);
      slots[t] = c.block_table[p / block_size] * block_size + static_cast<int32_t>(p % block_size);
      if (c.logits == SequenceChunk::Logits::kAll ||
          (c.logits == SequenceChunk::Logits::kLast && i == q - 1)) {
        rows[r++] = static_cast<int32_t>(t);
      }
    }
    lens[s] = static_cast<int32_t>(c.start_pos + q);
    std::copy(c.block_table.begin(), c.block_table.end(), tables + s * max_blocks);
  }
  qs[seqs] = static_cast<int32_t>(t);
  for (int64_t s = 0; s < seqs; ++s) {
    const SequenceChunk& c = chunks[s];
    for (int64_t i = c.extra_logits_begin; i < c.extra_logits_end; ++i) {
      rows[r++] = qs[s] + static_cast<int32_t>(i);
    }
  }
  return b;
}

}  // namespace expertmesh::models
