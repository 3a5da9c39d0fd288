// Decode steps as recorded graphs (Backend::RunGraph: CUDA graphs on the GPU).
//
// A decode step launches a few kernels per layer for a handful of tokens, so on a GPU the
// launch overhead is a large part of its time. A recorded graph replays the whole step in one
// launch, but only for the exact shapes and addresses it recorded. So decode steps are padded
// to buckets: rows to the next power of two (at most max_batch), the block-table width to the
// next power of two. Padding rows read token 0 at position 0, write no KV (slot -1), attend to
// one cached token of block 0 (always allocated; what they read is never used) and their logits
// are dropped. Each (rows, width) bucket owns every tensor its step touches besides the weights
// and the KV cache: the packed input batch, a Workspace for the scratch buffers and the logits,
// so the addresses a recording holds stay valid while other steps (prefill, other buckets) grow
// their own buffers.
//
// The first step of a bucket runs eagerly (it allocates the bucket's buffers and makes its
// constants); from the second on the step goes through RunGraph, which records it once and then
// replays it. On backends that do not record (the CPU) nothing is padded: Accepts is false.
#ifndef EXPERTMESH_WORKER_MODELS_DECODE_GRAPH_H_
#define EXPERTMESH_WORKER_MODELS_DECODE_GRAPH_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "kernels/backend.h"
#include "worker/models/model.h"
#include "worker/models/workspace.h"

namespace expertmesh::models {

class DecodeGraphs {
 public:
  // The step's layers over `dev` (the padded batch in backend memory; `host` is the same batch
  // on the host), with scratch from `workspace`, writing `logits` [rows, vocab] f32 on the
  // backend.
  using Body = std::function<absl::Status(const ForwardBatch& dev, const ForwardBatch& host,
                                          Workspace& workspace, Tensor& logits)>;

  // max_batch <= 0 turns graphs off.
  DecodeGraphs(Backend* backend, int max_batch);

  // Whether `batch` (host tensors) is a step this runs: the backend records graphs, every
  // sequence brings one token and takes its logits (query_start and logit_rows are 0, 1, ...),
  // and there are at most max_batch sequences.
  bool Accepts(const ForwardBatch& batch) const;

  // Runs the padded step (see the file comment) and returns the real rows' logits [n, vocab]
  // f32: a view of the bucket's buffer in backend memory, valid until the next Run. Errors:
  // those of the backend and of `body`.
  absl::StatusOr<Tensor> Run(const ForwardBatch& batch, int64_t vocab, const Body& body);

  // Buckets that have been used so far (for tests and logs).
  size_t num_buckets() const { return buckets_.size(); }

 private:
  struct Bucket {
    int64_t rows = 0, width = 0;
    Tensor inputs;  // i32, the padded batch packed in ForwardBatch field order
    Tensor logits;  // [rows, vocab] f32
    std::unique_ptr<Workspace> workspace;
    bool warmed_up = false;
  };

  Backend* backend_;
  int max_batch_;
  int64_t id_;  // distinguishes this model's graph keys from other models' on the backend
  std::unordered_map<int64_t, Bucket> buckets_;
  std::vector<int32_t> host_;  // the padded batch, packed
};

}  // namespace expertmesh::models

#endif  // EXPERTMESH_WORKER_MODELS_DECODE_GRAPH_H_
