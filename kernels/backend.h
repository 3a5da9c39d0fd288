// Backend: the operations a forward pass needs, implemented by kernels/cpu and kernels/cuda.
//
// Forward passes are written once against this interface. Each public op validates its
// arguments (shapes, dtypes, devices) the same way for every backend, then calls the backend's
// Do* implementation, which may reject a dtype combination it does not implement
// (Unimplemented) but never re-checks shapes. Supports(op) tells planners and tests up front.
//
// Conventions for every op:
//  - `n` is the number of tokens in the step (all sequences of the batch, concatenated).
//  - The "compute dtype" of activations is kF32 (exact mode, used for golden parity) or kBF16
//    (fast mode). Arithmetic is in fp32; a bf16 output is rounded once, to nearest even.
//  - Weights are kBF16 or kF32 (kF16 where stated), always [out_features, in_features] as in
//    Hugging Face checkpoints, so mmapped safetensors can be used without a copy. Linear and
//    MoeGroupedLinear also take kF8E4M3 weights with block scales on backends that
//    SupportsFp8Weights(), and kQ4 weights (int4 groups) on backends that SupportsQ4Weights():
//    each product is computed as with the dequantized weight (stored value, less its zero point
//    for kQ4, times its block's scale), in fp32.
//  - Output tensors are allocated by the caller (Backend::Allocate) and fully overwritten
//    unless stated. Inputs and outputs must not overlap unless an op says they may.
//  - Ops run in order on the backend's current stream. On the CPU backend they have finished
//    when the call returns; on CUDA they are enqueued (call Synchronize before reading on host).
//  - Errors: InvalidArgument for shape/dtype/device mismatches and out-of-range ids (message
//    names the op, the argument and the problem); Unimplemented for a valid combination this
//    backend does not implement. A failed op leaves its outputs unspecified and nothing else.
//
// Thread safety: one Backend instance is driven by one thread at a time.
#ifndef EXPERTMESH_KERNELS_BACKEND_H_
#define EXPERTMESH_KERNELS_BACKEND_H_

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/sampling_row.h"
#include "kernels/tensor.h"

namespace expertmesh::kernels {

// The ops of the interface, for Supports() and for messages.
enum class Op : uint8_t {
  kEmbedding,
  kRmsNorm,
  kRope,
  kLinear,
  kSiluMul,
  kMoeTopK,
  kMoePermute,
  kMoeGroupedLinear,
  kMoeCombine,
  kKvCacheWrite,
  kPagedAttention,
  kSampleTokens,
  kMaskLogits,
};
inline constexpr int kNumOps = static_cast<int>(Op::kMaskLogits) + 1;
std::string_view OpName(Op op);

// An opaque stream (a cudaStream_t on CUDA, unused on the CPU). Default: the backend's own.
struct Stream {
  void* handle = nullptr;
};

// How rotary embedding pairs dimensions inside the rotated slice of a head (width r).
enum class RopeStyle : uint8_t {
  // Hugging Face rotate_half (Llama, Qwen, Mixtral): pairs (i, i + r/2).
  kNeox,
  // Pairs (2i, 2i+1), output in the same interleaved order (GPT-J, Meta's original Llama).
  kInterleaved,
  // Hugging Face DeepSeek-V2/V3 with rope_interleave (apply_rotary_pos_emb_interleave): the
  // slice is first de-interleaved (evens then odds), then rotated as kNeox; the output stays in
  // the de-interleaved order. Attention scores equal kInterleaved's (q and k get the same
  // permutation), but the stored tensors, and so the KV cache, are laid out as HF's.
  kDeinterleaveNeox,
};

struct RopeParams {
  RopeStyle style = RopeStyle::kNeox;
  int rotary_dim = 0;     // r: width of the rotated slice, even, <= head_dim
  int rotary_offset = 0;  // first rotated dim in each head (DeepSeek's q_pe follows q_nope)
};

enum class MoeScoring : uint8_t { kSoftmax, kSigmoid };
// How a group's score is formed for group-limited top-k.
enum class MoeGroupScore : uint8_t {
  kMax,      // DeepSeek-V2 group_limited_greedy: the best expert of the group
  kTop2Sum,  // DeepSeek-V3 noaux_tc: sum of the group's two best (bias-corrected) scores
};

// Router semantics, matching Hugging Face's routers:
//  1. scores = softmax(logits) or sigmoid(logits), fp32.
//  2. choice = scores + e_score_correction_bias (bias only with kSigmoid; optional).
//  3. if num_groups > 1: keep the topk_groups groups with the best group score (over choice);
//     experts of the other groups get choice 0.0 (HF masked_fill with 0.0, not -inf).
//  4. ids = top_k of choice (ties: lower expert id first), in descending choice order.
//  5. weights = scores[ids] (without the bias); if norm_topk_prob, divided by their sum
//     (+1e-20); then multiplied by routed_scaling_factor.
// Mixtral: softmax, norm_topk_prob=true. Qwen2-MoE/Qwen3-MoE: softmax, norm per config.
// DeepSeek-V3: sigmoid, bias, kTop2Sum groups, norm per config, scaling factor.
// DeepSeek-V2: softmax, kMax groups; its HF code scales only when not normalising, so the
// forward pass passes routed_scaling_factor=1 when norm_topk_prob is set.
struct MoeRoutingParams {
  MoeScoring scoring = MoeScoring::kSoftmax;
  int top_k = 1;
  int num_groups = 1;   // n_group; 1 = no group limit
  int topk_groups = 1;  // topk_group
  MoeGroupScore group_score = MoeGroupScore::kTop2Sum;
  bool norm_topk_prob = false;
  float routed_scaling_factor = 1.0f;
};

// The batch layout for PagedAttention, computed once per step and shared by all layers.
// Sequence s owns query rows [query_start[s], query_start[s+1]) of q and has seq_lens[s] tokens
// in the cache after this step's KvCacheWrite. Its query row i sits at absolute position
// seq_lens[s] - q_len + i and attends causally to cache positions [0, that position]. Decode is
// q_len 1; chunked prefill is any q_len with earlier tokens already cached.
struct PagedAttentionBatch {
  Tensor query_start;   // [num_seqs + 1] i32, query_start[0] = 0, non-decreasing, last = n
  Tensor seq_lens;      // [num_seqs] i32, >= q_len of the sequence
  Tensor block_tables;  // [num_seqs, max_blocks_per_seq] i32 block ids into the cache
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string_view Name() const = 0;
  virtual Device device() const = 0;
  // Whether this backend implements `op` at all (dtype limits are reported per call).
  virtual bool Supports(Op op) const = 0;
  // Whether Linear and MoeGroupedLinear take fp8 e4m3 weights with block scales (Tensor::
  // block_scales), multiplying them as stored (the weight loader widens them otherwise).
  virtual bool SupportsFp8Weights() const { return false; }
  // Whether Linear and MoeGroupedLinear take kQ4 weights (int4 groups with their scales and
  // optional zero points), multiplying them as stored (the weight loader widens them otherwise).
  virtual bool SupportsQ4Weights() const { return false; }

  // Allocates an uninitialised tensor in this backend's memory.
  // Errors: InvalidArgument (bad shape), ResourceExhausted (out of memory).
  virtual absl::StatusOr<Tensor> Allocate(DType dtype, std::span<const int64_t> shape) = 0;
  absl::StatusOr<Tensor> Allocate(DType dtype, std::initializer_list<int64_t> shape) {
    return Allocate(dtype, std::span<const int64_t>(shape.begin(), shape.size()));
  }
  // Makes later ops run on `stream` (a default Stream{} is the backend's own).
  virtual absl::Status SetStream(Stream stream) = 0;
  // Waits for every op enqueued so far.
  virtual absl::Status Synchronize() = 0;

  // Moving data between the host and this backend's memory. The forward pass never touches a
  // tensor's bytes directly, so it runs unchanged on a device backend; on the CPU these are
  // plain copies.
  //   CopyFromHost: dst (a tensor of this backend) = dst.nbytes() bytes read from `host`.
  //     Ordered with the ops; `host` may be reused as soon as the call returns.
  //   CopyToHost: src.nbytes() bytes of `src` into `host`, after every op enqueued so far;
  //     complete when the call returns.
  //   Zero: every byte of `t` (a tensor of this backend) set to 0, ordered with the ops.
  // Errors: InvalidArgument for a tensor of another device.
  virtual absl::Status CopyFromHost(const void* host, Tensor& dst) = 0;
  virtual absl::Status CopyToHost(const Tensor& src, void* host) = 0;
  virtual absl::Status Zero(Tensor& t) = 0;
  // A weight as this backend's ops take it, from a host tensor (usually a view of mmapped
  // checkpoint bytes): the CPU returns `host` itself; a device backend copies it once into its
  // weight memory and returns the device tensor (the host tensor may then be released).
  // Errors: ResourceExhausted when the weight memory is full.
  virtual absl::StatusOr<Tensor> PrepareWeight(const Tensor& host) = 0;

  // Record-and-replay of a step's ops (CUDA graphs), for steps that repeat with the same shapes
  // such as decode at a given batch size. RunGraph runs `body`; a backend that SupportsGraphs()
  // records body's ops the first time it sees `key` and replays the recording on later calls
  // with that key instead of calling body. So body must be replayable: only ops (and Zero) on
  // tensors whose addresses stay fixed while the key is in use, the same ops for every call
  // with the key, per-step inputs written with CopyFromHost before RunGraph; no Allocate, no
  // copies, no Synchronize inside (a recording backend may refuse them: FailedPrecondition).
  // Keys are the caller's; two callers sharing a backend must not share keys.
  // Default (the CPU): runs body every time.
  virtual bool SupportsGraphs() const { return false; }
  virtual absl::Status RunGraph(int64_t key, const std::function<absl::Status()>& body) {
    return body();
  }

  // out[t, :] = table[ids[t], :].
  //   table: [vocab, hidden] bf16|f32|f16;  ids: [n] i32;  out: [n, hidden] compute dtype.
  // Errors: InvalidArgument when an id is outside [0, vocab) (names the first bad position).
  absl::Status Embedding(const Tensor& table, const Tensor& ids, Tensor& out);

  // RMSNorm with an optional fused residual add (HF LlamaRMSNorm semantics):
  //   if residual is given: residual = x + residual (rounded to residual's dtype); h = residual
  //   else h = x;  out = weight * to_compute_dtype(h * rsqrt(mean(h^2) + eps)).
  //   x, residual, out: [rows, dim] compute dtype (rows = n, or n*heads for per-head q/k norm);
  //   weight: [dim] bf16|f32. `residual` may be null. out may alias x; not residual.
  absl::Status RmsNorm(const Tensor& x, Tensor* residual, const Tensor& weight, float eps,
                       Tensor& out);

  // Rotary embedding, in place on q and (if defined) k:
  //   q: [n, q_heads, q_head_dim], k: [n, k_heads, k_head_dim] compute dtype; the slice
  //   [rotary_offset, rotary_offset + rotary_dim) of every head is rotated.
  //   cos_sin: [max_positions, rotary_dim] f32 from BuildRopeCache (cos half, then sin half,
  //   attention scaling already folded in); positions: [n] i32 in [0, max_positions).
  absl::Status Rope(const Tensor& cos_sin, const Tensor& positions, const RopeParams& params,
                    Tensor& q, Tensor& k);

  // out = x @ weight^T (+ bias), fp32 accumulation.
  //   x: [n, in] compute dtype; weight: [out, in] bf16|f32; bias: [out] bf16|f32 or undefined;
  //   out: [n, out] f32|bf16 (f32 for router logits and lm_head in bf16 mode).
  absl::Status Linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out);

  // out = silu(gate_up[:, :inter]) * gate_up[:, inter:] (the gate and up projections fused
  // into one [2*inter, hidden] weight, gate rows first).
  //   gate_up: [n, 2*inter] compute dtype; out: [n, inter] same dtype.
  absl::Status SiluMul(const Tensor& gate_up, Tensor& out);

  // MoE router top-k (see MoeRoutingParams for the exact semantics).
  //   logits: [n, experts] f32; bias: [experts] f32 (e_score_correction_bias) or undefined;
  //   topk_ids: [n, top_k] i32; topk_weights: [n, top_k] f32.
  // REQUIRES (else InvalidArgument): top_k <= experts; experts % num_groups == 0;
  //   topk_groups <= num_groups; top_k <= topk_groups * experts / num_groups;
  //   kTop2Sum needs >= 2 experts per group; bias only with kSigmoid.
  absl::Status MoeTopK(const Tensor& logits, const Tensor& bias, const MoeRoutingParams& params,
                       Tensor& topk_ids, Tensor& topk_weights);

  // Groups token copies by expert. Slot s = t * top_k + j is token t's j-th choice. Slots are
  // ordered by expert, then by slot (stable), so the result is independent of thread count.
  //   x: [n, hidden] compute dtype; topk_ids: [n, top_k] i32 in [0, num_experts);
  //   out_x: [n*top_k, hidden] (row r = x[sorted_slots[r] / top_k]);
  //   expert_offsets: [num_experts + 1] i32 (rows of expert e: [offsets[e], offsets[e+1]));
  //   sorted_slots: [n*top_k] i32.
  // Bit-exact data movement. Errors: InvalidArgument for an expert id out of range.
  absl::Status MoePermute(const Tensor& x, const Tensor& topk_ids, int num_experts, Tensor& out_x,
                          Tensor& expert_offsets, Tensor& sorted_slots);

  // Per-expert linear over rows grouped by MoePermute:
  //   out[r] = x[r] @ weights[e]^T for offsets[e] <= r < offsets[e+1].
  //   x: [m, in] compute dtype; expert_offsets: [E + 1] i32 with offsets[E] = m;
  //   weights: E tensors [out, in] bf16|f32 (views into checkpoint tensors); an expert with no
  //   rows may have an undefined weight (experts on other ranks); out: [m, out].
  absl::Status MoeGroupedLinear(const Tensor& x, const Tensor& expert_offsets,
                                std::span<const Tensor> weights, Tensor& out);

  // Weighted sum of each token's expert outputs, plus an optional shared expert:
  //   out[t] = sum_j topk_weights[t, j] * y[row of slot t*top_k+j]   (in ascending expert order,
  //   fp32, as HF's index_add loop)  + (shared_gate ? sigmoid(shared_gate[t]) : 1) * shared[t].
  //   y: [n*top_k, hidden]; sorted_slots: [n*top_k] i32 from MoePermute; topk_ids,
  //   topk_weights: [n, top_k]; shared: [n, hidden] or undefined; shared_gate: [n, 1] or [n]
  //   (pre-sigmoid logits, Qwen2-MoE) or undefined; out: [n, hidden] compute dtype.
  absl::Status MoeCombine(const Tensor& y, const Tensor& sorted_slots, const Tensor& topk_ids,
                          const Tensor& topk_weights, const Tensor& shared,
                          const Tensor& shared_gate, Tensor& out);

  // Stores this step's keys and values into the paged cache:
  //   k_cache[slot / block_size, slot % block_size] = k[t] for slot = slot_mapping[t] >= 0
  //   (negative slots are skipped: padding). Same for v.
  //   k: [n, kv_heads, k_dim], v: [n, kv_heads, v_dim] compute dtype;
  //   k_cache: [num_blocks, block_size, kv_heads, k_dim], v_cache: [.., v_dim], same dtype
  //   as k (a bit-exact copy) or bf16 from f32 (rounded); slot_mapping: [n] i32.
  // Errors: InvalidArgument for a slot >= num_blocks * block_size.
  absl::Status KvCacheWrite(const Tensor& k, const Tensor& v, const Tensor& slot_mapping,
                            Tensor& k_cache, Tensor& v_cache);

  // Causal attention of q against the paged cache (prefill, chunked prefill and decode alike;
  // see PagedAttentionBatch), softmax in fp32:
  //   out[t, h] = sum_p softmax_p(scale * q[t, h] . K[p, h / (q_heads / kv_heads)]) V[p, ..].
  //   q: [n, q_heads, k_dim] compute dtype; k_cache/v_cache as KvCacheWrite;
  //   out: [n, q_heads, v_dim] compute dtype. q_heads % kv_heads == 0 (GQA/MQA).
  // Errors: InvalidArgument for inconsistent batch tensors or a block id out of range.
  absl::Status PagedAttention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                              const PagedAttentionBatch& batch, float scale, Tensor& out);

  // Next-token sampling where the logits are, so only token ids travel to the host:
  //   tokens[r] = the draw of row r from logits[r] with params[r]: greedy (argmax, lowest id on
  //   ties) below kGreedyTemperature; otherwise softmax(logits / T) -> min_p -> top_k -> top_p
  //   (ranked by probability, lower id first on ties; top_p over the renormalised kept mass) ->
  //   one inverse-CDF draw u = CounterUniform(seed, counter) (common/splitmix64.h) over the kept
  //   tokens in id order. The CPU backend is the reference (kernels/cpu/cpu_sampling.h); the
  //   CUDA one ranks and sums in another order and may differ where u lies within a few ulps of
  //   a boundary (kernels/cuda/ops/sampling.h).
  //   logits: [rows, vocab] f32; params: `rows` entries in host memory; tokens: [rows] i32.
  // Errors: InvalidArgument for a row with a NaN or +inf logit or no finite one (on a device
  // backend: reported by the next Synchronize).
  absl::Status SampleTokens(const Tensor& logits, std::span<const SamplingRow> params,
                            Tensor& tokens);

  // Constrained decoding (a grammar's token bitmask), in place on logits rows before
  // SampleTokens: for each i, logits[rows[i], t] = -inf for every token t whose bit t % 32 of
  // masks[i, t / 32] is clear (bit set = allowed); other entries and rows not listed are left
  // as they are. Bit-exact (only -inf is written).
  //   masks: [m, ceil(vocab / 32)] i32 bit patterns (a uint32_t word each), bits past vocab
  //   ignored; rows: m distinct row indices of logits, in host memory; logits: [rows, vocab] f32.
  // Errors: InvalidArgument for a row index outside logits or listed twice.
  absl::Status MaskLogits(const Tensor& masks, std::span<const int32_t> rows, Tensor& logits);

 protected:
  // Implementations: arguments already validated as documented above.
  virtual absl::Status DoEmbedding(const Tensor& table, const Tensor& ids, Tensor& out) = 0;
  virtual absl::Status DoRmsNorm(const Tensor& x, Tensor* residual, const Tensor& weight, float eps,
                                 Tensor& out) = 0;
  virtual absl::Status DoRope(const Tensor& cos_sin, const Tensor& positions,
                              const RopeParams& params, Tensor& q, Tensor& k) = 0;
  virtual absl::Status DoLinear(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                Tensor& out) = 0;
  virtual absl::Status DoSiluMul(const Tensor& gate_up, Tensor& out) = 0;
  virtual absl::Status DoMoeTopK(const Tensor& logits, const Tensor& bias,
                                 const MoeRoutingParams& params, Tensor& topk_ids,
                                 Tensor& topk_weights) = 0;
  virtual absl::Status DoMoePermute(const Tensor& x, const Tensor& topk_ids, int num_experts,
                                    Tensor& out_x, Tensor& expert_offsets,
                                    Tensor& sorted_slots) = 0;
  virtual absl::Status DoMoeGroupedLinear(const Tensor& x, const Tensor& expert_offsets,
                                          std::span<const Tensor> weights, Tensor& out) = 0;
  virtual absl::Status DoMoeCombine(const Tensor& y, const Tensor& sorted_slots,
                                    const Tensor& topk_ids, const Tensor& topk_weights,
                                    const Tensor& shared, const Tensor& shared_gate,
                                    Tensor& out) = 0;
  virtual absl::Status DoKvCacheWrite(const Tensor& k, const Tensor& v, const Tensor& slot_mapping,
                                      Tensor& k_cache, Tensor& v_cache) = 0;
  virtual absl::Status DoPagedAttention(const Tensor& q, const Tensor& k_cache,
                                        const Tensor& v_cache, const PagedAttentionBatch& batch,
                                        float scale, Tensor& out) = 0;
  virtual absl::Status DoSampleTokens(const Tensor& logits, std::span<const SamplingRow> params,
                                      Tensor& tokens) = 0;
  virtual absl::Status DoMaskLogits(const Tensor& masks, std::span<const int32_t> rows,
                                    Tensor& logits) = 0;
};

}  // namespace expertmesh::kernels

#endif  // EXPERTMESH_KERNELS_BACKEND_H_
