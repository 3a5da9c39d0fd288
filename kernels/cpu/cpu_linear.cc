// Linear (x @ W^T) and the per-expert grouped linear of MoE layers.
//
// Weights are bf16, f32, fp8 e4m3 with block scales, or q4 (int4 groups, kernels/q4_layout.h).
// bf16 activations with bf16, fp8 or q4 weights on the AMX family take the tile GEMM
// (kernels_amx.cc, kernels_amx_fp8.cc) when at least amx_min_tokens tokens multiply the weight (4
// by default, 1 when batch-invariant); their activations are packed into the tile layout once per
// product, before the tasks run. bf16 activations on a CPU with AVX512_BF16 otherwise take the bf16
// dot-product kernels for any token count, q4 weights widened to bf16 a chunk of rows at a time
// from q4_widen_min_tokens tokens per weight on. Otherwise there
// are two paths, chosen per weight by the number of tokens multiplying it:
//  - few tokens (decode): the KernelTable GEMM streams each weight row once from memory,
//    widening bf16 (or fp8 e4m3 times its block scale, or q4 less its zero point times its group
//    scale) in registers; memory-bound, so it aims at the DRAM bandwidth, and fp8 weights read
//    half the bytes, q4 a quarter.
//  - many tokens (prefill): compute-bound; each task widens (dequantizes) a tile of weight rows
//    to fp32 and calls OpenBLAS sgemm on it, single-threaded (this backend's pool owns the cores).
// Both write each output element from exactly one task, so results do not depend on threads.
#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/cpu_ops.h"

namespace expertmesh::kernels::cpu {
namespace {

// One x @ W^T product: x [n, k] f32, W [m, k], out [n, ldo] f32 (columns [0, m)).
struct GemmJob {
  const float* x;
  int64_t n;
  int64_t k;
  const Tensor* w;
  float* out;
  int64_t ldo;
  // The same activations in bf16 when they are bf16 and the table has gemm_bf16_xbf16.
  const uint16_t* x_bf16 = nullptr;
  // x_bf16 in the AMX tile layout (amx_pack_x), when the job takes the AMX kernel.
  const uint16_t* x_packed = nullptr;
};

struct GemmTask {
  int job;
  int64_t row_begin;
  int64_t row_end;
  bool blas;
  bool bf16_dot;  // gemm_bf16_xbf16 on the bf16 activations
  bool widened;   // ... on fp8 or q4 weights widened to bf16 a few rows at a time
  bool amx;       // amx_gemm_bf16 / _f8 / _q4 on the packed activations
};

// The AMX threshold (CpuBackendOptions::amx_min_tokens) defaults to 4: products with fewer tokens
// per weight take the AVX512_BF16 kernel. A tile holds 16 tokens; with 1-3 of them the tiles do
// the same weight traffic for a fraction of the work, and fp8 weights must first be widened to
// bf16 in memory for the tiles, where VDPBF16PS widens them in registers. Measured on the 2-vCPU
// Xeon (2 threads, bench-1b, engine_decode_bench, 2026-12-06), VDPBF16PS against tiles for every
// count: batch 1 bf16 31.6 / 29.6 tok/s, fp8 49.3 / 30.1; batch 2 fp8 68.3 / 45.5; batch 8 (experts
// see 2 tokens, dense layers 8) bf16 98.1 / 106.1. The price: a tile product gives
// other bits than VDPBF16PS (kernels_amx.cc), so a token's output can depend, in its last bits,
// on how many tokens share its weights in that step (a greedy token can flip where two
// candidates tie to within them). CpuBackendOptions::batch_invariant puts every count on the
// tiles (threshold 1) for those who need a token's output independent of its batch.

// q4 weights under bf16 activations on AVX512_BF16 (off the AMX tiles): the exact kernel
// (gemm_q4_xbf16) sums each group of a row apart and folds the sum into the token's total, one
// FMA and a store per row, token and group; with many tokens those folds bound it. From
// q4_widen_min_tokens tokens per weight on, each task widens its rows a chunk at a time to bf16
// ((q - zero) x scale, rounded to bf16: the values the AMX tiles multiply, within a relative 2^-9
// of the dequantized weight as a bf16 checkpoint's are) and multiplies the chunk with
// gemm_bf16_xbf16, which needs no fold. Measured on Zen 4 (one core, 2048 x 16384, bf16
// activations, groups of 128, ms exact / widened): 4 tokens 2.93-3.02 / 2.73-2.80, 8 tokens
// 5.66-5.75 / 4.41-4.56, 16 tokens 9.93-10.0 / 6.80-7.10. Hence the default, 4. As with the AMX
// threshold, a token's output then depends, in its last bits, on how many tokens share its
// weights; CpuBackendOptions::batch_invariant turns the widening off.
// fp8 weights need neither folds nor widening there: their scales, one per 128 x 128 block, are
// the same along a run of 128 rows, so gemm_f8_xbf16 puts them onto the activations and
// multiplies the e4m3 values as they are, for any token count (kernels_avx512_bf16.cc). It
// replaced an fp8 widening like q4's (from 12 tokens per weight) and the block-folding kernel:
// one Zen 4 core, 8 layers of bench-1b's 32 experts of [768, 2048] with 32 tokens routed top-8,
// 76.5 -> 40.4 ms (bf16 weights: 60.6); 2048 x 16384 at 4 tokens 3.9 -> 2.0 ms, at 256 tokens
// widened 118-122 -> 94-106 ms.

// Where the activations are bf16 and the CPU has a bf16 dot-product kernel, every product uses
// it, whatever its token count: it multiplies the stored values as they are, two pairs per lane
// and instruction. Measured on Zen 5 (2 threads, bench-1b) against the AVX-512F kernel on the
// widened values: batch 1 the same (memory-bound), batch 8 +8%, batch 32 +35%, prefill +25%.
// Otherwise prefill-sized products (blas_min_tokens per weight or more) go through OpenBLAS,
// another summation: with fp32 activations a token's bits differ between products of fewer and
// of at least blas_min_tokens tokens per weight.

// x's bf16 values when the kernels can multiply them as they are.
const uint16_t* Bf16Activations(const CpuContext& ctx, const Tensor& x) {
  if (x.dtype() != DType::kBF16 || ctx.kernels->gemm_bf16_xbf16 == nullptr) return nullptr;
  return x.data<uint16_t>();
}

// Whether every product with weight `w` multiplies bf16 activations as they are (then no fp32
// copy of them is needed: for a prefill that copy is twice the activations' bytes, written and
// read for nothing).
bool MultipliesBf16Activations(const CpuContext& ctx, const Tensor& w) {
  return w.dtype() == DType::kBF16 ||
         (w.dtype() == DType::kF8E4M3 && ctx.kernels->gemm_f8_xbf16 != nullptr) ||
         (w.dtype() == DType::kQ4 && ctx.kernels->gemm_q4_xbf16 != nullptr);
}

// Streaming tasks are contiguous row ranges as large as load balance allows, so that each core
// reads long runs of consecutive memory, which its prefetchers follow; small tasks handed out in
// turn interleave the cores' reads and starve them (measured on Zen 5 with 2 threads: a
// one-token GEMM of k = 384 read 24 GB/s in 16-row tasks, 39 GB/s in halves). Sizes are guided:
// each task takes 1 / (2 x threads) of the call's streaming weight bytes not yet handed out
// (none under kMinStreamTaskBytes), so the first tasks are long and the last ones short enough
// that the threads finish together.
constexpr int64_t kMinStreamTaskBytes = 64 << 10;
constexpr int64_t kBlasRowsPerTask = 128;

// Rows per streaming task of a job with rows of `row_bytes`: a multiple of the 4-row micro-kernel.
int64_t StreamRowsPerTask(int64_t task_bytes, int64_t row_bytes) {
  return std::max<int64_t>(4, task_bytes / std::max<int64_t>(1, row_bytes) / 4 * 4);
}

// The kernels' view of an fp8 weight's block scales, starting at weight row `row_begin`.
Fp8Scales ScalesOf(const Tensor& w, int64_t row_begin) {
  const BlockScales& b = *w.block_scales();
  return {.scales = b.scales->data<float>(),
          .ld = b.scales->dim(1),
          .block_rows = b.block_rows,
          .block_cols = b.block_cols,
          .row_offset = b.row_offset + row_begin,
          .col_offset = b.col_offset};
}

// The kernels' view of a q4 weight's groups, starting at weight row `row_begin`.
Q4Groups Q4GroupsOf(const Tensor& w, int64_t row_begin) {
  const BlockScales& b = *w.block_scales();
  return {.scales = b.scales->data<float>(),
          .zero_points = b.zero_points == nullptr ? nullptr : b.zero_points->data<float>(),
          .ld = b.scales->dim(1),
          .block_rows = b.block_rows,
          .block_cols = b.block_cols,
          .row_offset = b.row_offset + row_begin,
          .col_offset = b.col_offset};
}

// Bytes per row of a q4 weight of k values.
int64_t Q4RowBytes(int64_t k) { return k / 2; }

// Rows [row_begin, row_end) of an fp8 weight as fp32 values (scales applied) into `tile`.
void DequantizeFp8Rows(const CpuContext& ctx, const Tensor& w, int64_t row_begin, int64_t row_end,
                       std::vector<float>& tile) {
  const int64_t k = w.dim(1);
  tile.resize(static_cast<size_t>((row_end - row_begin) * k));
  const Fp8Scales scales = ScalesOf(w, row_begin);
  for (int64_t r = 0; r < row_end - row_begin; ++r) {
    const uint8_t* row = w.data<uint8_t>() + (row_begin + r) * k;
    const float* scale_row = scales.Row(r);
    for (int64_t i = 0; i < k;) {
      const int64_t block = (i + scales.col_offset) / scales.block_cols;
      const int64_t end = std::min(k, (block + 1) * scales.block_cols - scales.col_offset);
      ctx.kernels->f8_to_f32(row + i, scale_row[block], tile.data() + r * k + i, end - i);
      i = end;
    }
  }
}

void InitBlasThreadsOnce() {
  static std::once_flag once;
  // Calls come from our pool's threads; OpenBLAS must not start (and spin) threads of its own.
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

// Rows widened at a time: a widened chunk (at most 256 KiB but for 4 rows past k = 32768) stays
// in the L2 while every token group multiplies it, in whole 4-row strips of the bf16 kernel.
int64_t WidenedChunkRows(int64_t k) {
  return std::clamp<int64_t>((int64_t{128} << 10) / std::max<int64_t>(1, k) / 4 * 4, 4, 32);
}
// Tokens per gemm_bf16_xbf16 call on a widened chunk, so that their activations (96 x k bf16,
// 384 KiB at k = 2048) stay in the L2 beside it across the chunk's strips: (then widened) fp8,
// 256 tokens x 2048 x 16384 on a Zen 4 core, 141-143 GFLOP/s in one call, 148-152 in blocks of 96.
constexpr int64_t kWidenedTokenBlock = 96;

// The task's rows of a q4 weight widened to bf16 (widen_q4_bf16) a chunk at a time, each chunk
// multiplied by all the job's tokens with gemm_bf16_xbf16. The widening of a chunk prefetches the
// next one of the task.
void MultiplyWidened(const CpuContext& ctx, const GemmJob& job, const GemmTask& task) {
  thread_local std::vector<uint16_t> wide;
  const int64_t k = job.k, ldw = Q4RowBytes(k);
  const int64_t chunk = WidenedChunkRows(k);
  wide.resize(static_cast<size_t>(chunk * k));
  for (int64_t r = task.row_begin; r < task.row_end; r += chunk) {
    const int64_t rows = std::min(chunk, task.row_end - r);
    const uint8_t* w = job.w->data<uint8_t>() + r * ldw;
    const uint8_t* next = r + rows + chunk <= task.row_end ? w + rows * ldw : nullptr;
    ctx.kernels->widen_q4_bf16(w, ldw, rows, k, Q4GroupsOf(*job.w, r), next, wide.data());
    for (int64_t t = 0; t < job.n; t += kWidenedTokenBlock) {
      ctx.kernels->gemm_bf16_xbf16(job.x_bf16 + t * k, k, std::min(kWidenedTokenBlock, job.n - t),
                                   k, wide.data(), k, rows, job.out + t * job.ldo + r, job.ldo);
    }
  }
}

void RunTask(const CpuContext& ctx, const GemmJob& job, const GemmTask& task,
             std::vector<float>& tile) {
  const int64_t rows = task.row_end - task.row_begin;
  float* out = job.out + task.row_begin;
  const bool q4 = job.w->dtype() == DType::kQ4;
  const uint8_t* q4_rows =
      q4 ? job.w->data<uint8_t>() + task.row_begin * Q4RowBytes(job.k) : nullptr;
  if (task.amx) {
    if (q4) {
      ctx.kernels->amx_gemm_q4(job.x_packed, job.n, job.k, q4_rows, Q4RowBytes(job.k), rows,
                               Q4GroupsOf(*job.w, task.row_begin), out, job.ldo);
      return;
    }
    if (job.w->dtype() == DType::kF8E4M3) {
      ctx.kernels->amx_gemm_f8(job.x_packed, job.n, job.k,
                               job.w->data<uint8_t>() + task.row_begin * job.k, job.k, rows,
                               ScalesOf(*job.w, task.row_begin), out, job.ldo);
      return;
    }
    ctx.kernels->amx_gemm_bf16(job.x_packed, job.n, job.k,
                               job.w->data<uint16_t>() + task.row_begin * job.k, job.k, rows, out,
                               job.ldo);
    return;
  }
  if (task.widened) {
    MultiplyWidened(ctx, job, task);
    return;
  }
  if (task.bf16_dot) {
    if (q4) {
      ctx.kernels->gemm_q4_xbf16(job.x_bf16, job.k, job.n, job.k, q4_rows, Q4RowBytes(job.k), rows,
                                 Q4GroupsOf(*job.w, task.row_begin), out, job.ldo);
      return;
    }
    if (job.w->dtype() == DType::kF8E4M3) {
      ctx.kernels->gemm_f8_xbf16(job.x_bf16, job.k, job.n, job.k,
                                 job.w->data<uint8_t>() + task.row_begin * job.k, job.k, rows,
                                 ScalesOf(*job.w, task.row_begin), out, job.ldo);
      return;
    }
    ctx.kernels->gemm_bf16_xbf16(job.x_bf16, job.k, job.n, job.k,
                                 job.w->data<uint16_t>() + task.row_begin * job.k, job.k, rows, out,
                                 job.ldo);
    return;
  }
  if (!task.blas) {
    if (q4) {
      ctx.kernels->gemm_q4(job.x, job.k, job.n, job.k, q4_rows, Q4RowBytes(job.k), rows,
                           Q4GroupsOf(*job.w, task.row_begin), out, job.ldo);
    } else if (job.w->dtype() == DType::kF8E4M3) {
      ctx.kernels->gemm_f8(job.x, job.k, job.n, job.k,
                           job.w->data<uint8_t>() + task.row_begin * job.k, job.k, rows,
                           ScalesOf(*job.w, task.row_begin), out, job.ldo);
    } else if (job.w->dtype() == DType::kBF16) {
      ctx.kernels->gemm_bf16(job.x, job.k, job.n, job.k,
                             job.w->data<uint16_t>() + task.row_begin * job.k, job.k, rows, out,
                             job.ldo);
    } else {
      ctx.kernels->gemm_f32(job.x, job.k, job.n, job.k,
                            job.w->data<float>() + task.row_begin * job.k, job.k, rows, out,
                            job.ldo);
    }
    return;
  }
  const float* w = nullptr;
  if (q4) {
    tile.resize(static_cast<size_t>(rows * job.k));
    const Q4Groups groups = Q4GroupsOf(*job.w, task.row_begin);
    for (int64_t r = 0; r < rows; ++r) {
      ctx.kernels->q4_to_f32(q4_rows + r * Q4RowBytes(job.k), job.k, groups, r,
                             tile.data() + r * job.k);
    }
    w = tile.data();
  } else if (job.w->dtype() == DType::kF8E4M3) {
    DequantizeFp8Rows(ctx, *job.w, task.row_begin, task.row_end, tile);
    w = tile.data();
  } else if (job.w->dtype() == DType::kBF16) {
    tile.resize(static_cast<size_t>(rows * job.k));
    ctx.kernels->bf16_to_f32(job.w->data<uint16_t>() + task.row_begin * job.k, tile.data(),
                             rows * job.k);
    w = tile.data();
  } else {
    w = job.w->data<float>() + task.row_begin * job.k;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(job.n),
              static_cast<int>(rows), static_cast<int>(job.k), 1.0f, job.x, static_cast<int>(job.k),
              w, static_cast<int>(job.k), 0.0f, out, static_cast<int>(job.ldo));
}

// Packs the activations of the jobs that take the AMX kernel, each 16-token block by one task,
// into one buffer, and points the jobs at their part.
void PackAmxActivations(const CpuContext& ctx, std::vector<GemmJob>& jobs,
                        const std::vector<bool>& amx, std::vector<uint16_t>& packed) {
  struct Piece {
    size_t job;
    int64_t block;
  };
  std::vector<Piece> pieces;
  std::vector<int64_t> offsets(jobs.size(), 0);
  int64_t total = 0;
  for (size_t j = 0; j < jobs.size(); ++j) {
    if (!amx[j]) continue;
    offsets[j] = total;
    total += AmxPackedXElements(jobs[j].n, jobs[j].k);
    for (int64_t b = 0; b * kAmxTileTokens < jobs[j].n; ++b) pieces.push_back({j, b});
  }
  if (pieces.empty()) return;
  packed.resize(static_cast<size_t>(total));
  for (size_t j = 0; j < jobs.size(); ++j) {
    if (amx[j]) jobs[j].x_packed = packed.data() + offsets[j];
  }
  ctx.pool->ParallelFor(static_cast<int64_t>(pieces.size()), 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const GemmJob& job = jobs[pieces[i].job];
      const int64_t t0 = pieces[i].block * kAmxTileTokens;
      const int64_t tokens = std::min<int64_t>(kAmxTileTokens, job.n - t0);
      ctx.kernels->amx_pack_x(
          job.x_bf16 + t0 * job.k, job.k, tokens, job.k,
          packed.data() + offsets[pieces[i].job] + AmxPackedXElements(t0, job.k));
    }
  });
}

// n rows of k activations gathered in a weight's column order: out[t][j] = x[t][order[j]].
template <typename T>
const T* Gather(const T* x, int64_t n, int64_t k, const int32_t* order, std::vector<T>& out) {
  out.resize(static_cast<size_t>(n * k));
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t j = 0; j < k; ++j) out[t * k + j] = x[t * k + order[j]];
  }
  return out.data();
}

// Points the jobs whose weight has a column order (GPTQ act-order, BlockScales::column_order)
// at their activations gathered in that order; `storage` keeps the copies.
// Allocates nothing for products without one (every call of a model without act-order).
void ApplyColumnOrders(std::vector<GemmJob>& jobs,
                       std::vector<std::pair<std::vector<float>, std::vector<uint16_t>>>& storage) {
  for (size_t j = 0; j < jobs.size(); ++j) {
    GemmJob& job = jobs[j];
    const BlockScales* b = job.w->block_scales();
    if (b == nullptr || b->column_order == nullptr || job.n == 0) continue;
    if (storage.empty()) storage.resize(jobs.size());
    const int32_t* order = b->column_order->data<int32_t>();
    if (job.x != nullptr) job.x = Gather(job.x, job.n, job.k, order, storage[j].first);
    if (job.x_bf16 != nullptr) {
      job.x_bf16 = Gather(job.x_bf16, job.n, job.k, order, storage[j].second);
    }
  }
}

void RunJobs(const CpuContext& ctx, std::vector<GemmJob>& jobs) {
  std::vector<std::pair<std::vector<float>, std::vector<uint16_t>>> reordered;
  ApplyColumnOrders(jobs, reordered);
  const auto uses_amx = [&](const GemmJob& job) {
    if (job.x_bf16 == nullptr || ctx.kernels->amx_gemm_bf16 == nullptr || ctx.amx_min_tokens <= 0 ||
        job.n < ctx.amx_min_tokens) {
      return false;
    }
    return job.w->dtype() == DType::kBF16 ||
           (job.w->dtype() == DType::kF8E4M3 && ctx.kernels->amx_gemm_f8 != nullptr) ||
           (job.w->dtype() == DType::kQ4 && ctx.kernels->amx_gemm_q4 != nullptr);
  };
  const auto uses_bf16_dot = [&](const GemmJob& job) {
    return job.x_bf16 != nullptr && !uses_amx(job) && MultipliesBf16Activations(ctx, *job.w);
  };
  const auto uses_widened = [&](const GemmJob& job) {
    if (!uses_bf16_dot(job)) return false;
    return job.w->dtype() == DType::kQ4 && ctx.kernels->widen_q4_bf16 != nullptr &&
           ctx.q4_widen_min_tokens > 0 && job.n >= ctx.q4_widen_min_tokens;
  };
  const auto uses_blas = [&](const GemmJob& job) {
    return !uses_amx(job) && !uses_bf16_dot(job) && ctx.blas_min_tokens > 0 &&
           job.n >= ctx.blas_min_tokens;
  };
  std::vector<bool> amx(jobs.size(), false);
  int64_t stream_bytes = 0;
  for (size_t j = 0; j < jobs.size(); ++j) {
    amx[j] = jobs[j].n > 0 && uses_amx(jobs[j]);
    if (jobs[j].n > 0 && !uses_blas(jobs[j])) stream_bytes += jobs[j].w->nbytes();
  }
  // Kept across calls (RunJobs runs on the backend's one calling thread): a prefill's packed
  // activations are megabytes, and a fresh allocation each call would fault its pages in again.
  thread_local std::vector<uint16_t> packed;
  PackAmxActivations(ctx, jobs, amx, packed);
  const int64_t guide = 2 * ctx.pool->num_threads();
  std::vector<GemmTask> tasks;
  for (size_t j = 0; j < jobs.size(); ++j) {
    const GemmJob& job = jobs[j];
    if (job.n == 0) continue;
    const int64_t m = job.w->dim(0);
    const bool bf16_dot = uses_bf16_dot(job);
    const bool widened = uses_widened(job);
    const bool blas = uses_blas(job);
    const int64_t row_bytes = static_cast<int64_t>(job.w->nbytes()) / m;
    for (int64_t r = 0; r < m;) {
      int64_t rows =
          blas ? kBlasRowsPerTask
               : StreamRowsPerTask(std::max(kMinStreamTaskBytes, stream_bytes / guide), row_bytes);
      // AMX tasks take whole 32-row blocks (two tiles), the kernel's unit.
      if (amx[j]) rows = std::max<int64_t>(32, rows / 32 * 32);
      const int64_t end = std::min(m, r + rows);
      tasks.push_back({static_cast<int>(j), r, end, blas, bf16_dot, widened, amx[j]});
      if (!blas) stream_bytes -= (end - r) * row_bytes;
      r = end;
    }
    if (blas) InitBlasThreadsOnce();
  }
  ctx.pool->ParallelFor(static_cast<int64_t>(tasks.size()), 1, [&](int64_t b, int64_t e) {
    std::vector<float> tile;
    for (int64_t i = b; i < e; ++i) RunTask(ctx, jobs[tasks[i].job], tasks[i], tile);
  });
}

// Where a product with bf16 outputs puts its fp32 results before they are rounded and stored:
// the calling thread's buffer, kept from call to call while it stays under kRetainedOutputBytes
// (a fresh one above), and never zero-filled (the GEMM writes every element). A zero-filled
// fresh vector per call cost a 512-token prefill 3% of its samples in memset and page faults,
// on the calling thread alone while the other workers waited.
constexpr int64_t kRetainedOutputBytes = int64_t{64} << 20;
float* OutputScratch(int64_t count, std::unique_ptr<float[]>& fresh) {
  thread_local std::unique_ptr<float[]> kept;
  thread_local int64_t kept_count = 0;
  if (count * static_cast<int64_t>(sizeof(float)) > kRetainedOutputBytes) {
    fresh.reset(new float[static_cast<size_t>(count)]);
    return fresh.get();
  }
  if (count > kept_count) {
    kept.reset(new float[static_cast<size_t>(count)]);
    kept_count = count;
  }
  return kept.get();
}

}  // namespace

absl::Status CpuLinear(const CpuContext& ctx, const Tensor& x, const Tensor& weight,
                       const Tensor& bias, Tensor& out) {
  const int64_t n = x.dim(0), k = x.dim(1), m = weight.dim(0);
  std::vector<float> xs;
  std::unique_ptr<float[]> os;
  const uint16_t* xb = Bf16Activations(ctx, x);
  const float* xf =
      xb != nullptr && MultipliesBf16Activations(ctx, weight) ? nullptr : AsF32(ctx, x, xs);
  float* of = out.dtype() == DType::kF32 ? out.data<float>() : OutputScratch(n * m, os);
  std::vector<GemmJob> jobs{GemmJob{xf, n, k, &weight, of, m, xb}};
  RunJobs(ctx, jobs);
  if (bias.defined()) {
    std::vector<float> bs;
    const float* bf = AsF32(ctx, bias, bs);
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t o = 0; o < m; ++o) of[t * m + o] += bf[o];
    }
  }
  if (out.dtype() != DType::kF32) StoreF32(ctx, of, out, 0, n * m);
  return absl::OkStatus();
}

absl::Status CpuMoeGroupedLinear(const CpuContext& ctx, const Tensor& x,
                                 const Tensor& expert_offsets, std::span<const Tensor> weights,
                                 Tensor& out) {
  const int64_t rows = x.dim(0), k = x.dim(1), m = out.dim(1);
  const int64_t experts = static_cast<int64_t>(weights.size());
  const int32_t* off = expert_offsets.data<int32_t>();
  if (off[0] != 0 || off[experts] != rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("moe_grouped_linear: expert_offsets must run from 0 to ", rows, ", got ",
                     off[0], " .. ", off[experts]));
  }
  std::vector<float> xs;
  std::unique_ptr<float[]> os;
  float* of = out.dtype() == DType::kF32 ? out.data<float>() : OutputScratch(rows * m, os);
  const uint16_t* xb = Bf16Activations(ctx, x);
  bool need_f32 = xb == nullptr;
  std::vector<GemmJob> jobs;
  std::vector<int64_t> first_rows;  // each job's first row of x
  for (int64_t e = 0; e < experts; ++e) {
    if (off[e + 1] < off[e]) {
      return absl::InvalidArgumentError(
          absl::StrCat("moe_grouped_linear: expert_offsets decrease at expert ", e));
    }
    const int64_t ne = off[e + 1] - off[e];
    if (ne == 0) continue;
    if (!weights[e].defined()) {
      return absl::InvalidArgumentError(
          absl::StrCat("moe_grouped_linear: expert ", e, " has ", ne, " rows but no weight"));
    }
    need_f32 |= !MultipliesBf16Activations(ctx, weights[e]);
    // The fp32 activations, when any job needs them, are set below.
    jobs.push_back(GemmJob{nullptr, ne, k, &weights[e], of + off[e] * m, m,
                           xb == nullptr ? nullptr : xb + off[e] * k});
    first_rows.push_back(off[e]);
  }
  if (need_f32) {
    const float* xf = AsF32(ctx, x, xs);
    for (size_t j = 0; j < jobs.size(); ++j) jobs[j].x = xf + first_rows[j] * k;
  }
  RunJobs(ctx, jobs);
  if (out.dtype() != DType::kF32) StoreF32(ctx, of, out, 0, rows * m);
  return absl::OkStatus();
}

}  // namespace expertmesh::kernels::cpu
