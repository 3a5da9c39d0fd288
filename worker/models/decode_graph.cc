#include "worker/models/decode_graph.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "common/status_macros.h"

namespace expertmesh::models {
namespace {

int64_t NextPowerOfTwo(int64_t v) {
  int64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

std::atomic<int64_t> next_graphs_id{1};

// The batch's seven i32 tensors as views over `packed` (host or backend memory), for `rows`
// sequences of one token each and block tables `width` wide.
absl::StatusOr<ForwardBatch> Unpack(const Tensor& packed, int64_t rows, int64_t width) {
  ForwardBatch b;
  const auto fields = b.fields();
  const int64_t lens[] = {rows, rows, rows, rows, rows + 1, rows, rows * width};
  int64_t off = 0;
  for (size_t i = 0; i < fields.size(); ++i) {
    ASSIGN_OR_RETURN(*fields[i], packed.Slice(off, off + lens[i]));
    off += lens[i];
  }
  ASSIGN_OR_RETURN(b.attention.block_tables, b.attention.block_tables.Reshape({rows, width}));
  return b;
}

int64_t PackedLength(int64_t rows, int64_t width) { return 6 * rows + 1 + rows * width; }

}  // namespace

DecodeGraphs::DecodeGraphs(Backend* backend, int max_batch)
    : backend_(backend), max_batch_(max_batch), id_(next_graphs_id.fetch_add(1)) {}

bool DecodeGraphs::Accepts(const ForwardBatch& batch) const {
  if (max_batch_ <= 0 || !backend_->SupportsGraphs()) return false;
  const int64_t n = batch.token_ids.dim(0);
  if (n < 1 || n > max_batch_ || batch.logit_rows.dim(0) != n ||
      batch.attention.query_start.dim(0) != n + 1 || batch.attention.seq_lens.dim(0) != n ||
      batch.attention.block_tables.dim(0) != n) {
    return false;
  }
  const int32_t* rows = batch.logit_rows.data<int32_t>();
  const int32_t* starts = batch.attention.query_start.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    if (rows[i] != i || starts[i] != i) return false;
  }
  return starts[n] == n;
}

absl::StatusOr<Tensor> DecodeGraphs::Run(const ForwardBatch& batch, int64_t vocab,
                                         const Body& body) {
  const int64_t n = batch.token_ids.dim(0);
  const int64_t rows = std::min<int64_t>(NextPowerOfTwo(n), max_batch_);
  const int64_t width_in = batch.attention.block_tables.dim(1);
  const int64_t width = NextPowerOfTwo(std::max<int64_t>(width_in, 1));
  const int64_t key = (id_ << 48) | (rows << 24) | width;
  Bucket& g = buckets_[key];
  if (!g.inputs.defined()) {
    g.rows = rows;
    g.width = width;
    ASSIGN_OR_RETURN(g.inputs, backend_->Allocate(DType::kI32, {PackedLength(rows, width)}));
    ASSIGN_OR_RETURN(g.logits, backend_->Allocate(DType::kF32, {rows, vocab}));
    g.workspace = std::make_unique<Workspace>(backend_);
  }

  // The padded batch on the host: real rows first, then padding rows (see the file comment).
  host_.assign(static_cast<size_t>(PackedLength(rows, width)), 0);
  ASSIGN_OR_RETURN(Tensor host_packed,
                   Tensor::View(host_.data(), DType::kI32, {PackedLength(rows, width)}));
  ASSIGN_OR_RETURN(ForwardBatch host, Unpack(host_packed, rows, width));
  std::memcpy(host.token_ids.raw_data(), batch.token_ids.raw_data(), batch.token_ids.nbytes());
  std::memcpy(host.positions.raw_data(), batch.positions.raw_data(), batch.positions.nbytes());
  int32_t* slots = host.slot_mapping.data<int32_t>();
  std::memcpy(slots, batch.slot_mapping.raw_data(), batch.slot_mapping.nbytes());
  std::fill(slots + n, slots + rows, -1);
  int32_t* logit_rows = host.logit_rows.data<int32_t>();
  int32_t* starts = host.attention.query_start.data<int32_t>();
  int32_t* lens = host.attention.seq_lens.data<int32_t>();
  for (int64_t i = 0; i < rows; ++i) logit_rows[i] = static_cast<int32_t>(i);
  for (int64_t i = 0; i <= rows; ++i) starts[i] = static_cast<int32_t>(i);
  std::memcpy(lens, batch.attention.seq_lens.raw_data(), batch.attention.seq_lens.nbytes());
  std::fill(lens + n, lens + rows, 1);
  const int32_t* tables_in = batch.attention.block_tables.data<int32_t>();
  int32_t* tables = host.attention.block_tables.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(tables + i * width, tables_in + i * width_in, width_in * sizeof(int32_t));
  }

  RETURN_IF_ERROR(backend_->CopyFromHost(host_.data(), g.inputs));
  ASSIGN_OR_RETURN(const ForwardBatch dev, Unpack(g.inputs, rows, width));
  auto step = [&]() { return body(dev, host, *g.workspace, g.logits); };
  if (g.warmed_up) {
    RETURN_IF_ERROR(backend_->RunGraph(key, step));
  } else {
    RETURN_IF_ERROR(step());
    g.warmed_up = true;
  }
  return g.logits.Slice(0, n);
}

}  // namespace expertmesh::models
