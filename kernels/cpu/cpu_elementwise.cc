// Embedding lookup, RMSNorm with fused residual add, SiLU-and-multiply, and the dtype helpers
// the other op files share.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/row_loops.h"

namespace expertmesh::kernels::cpu {

const float* AsF32(const CpuContext& ctx, const Tensor& t, std::vector<float>& scratch) {
  if (t.dtype() == DType::kF32) return t.data<float>();
  const int64_t n = t.numel();
  scratch.resize(static_cast<size_t>(n));
  const uint16_t* src = t.data<uint16_t>();
  float* dst = scratch.data();
  const KernelTable* kt = ctx.kernels;
  ctx.pool->ParallelFor(n, 1 << 14,
                        [&](int64_t b, int64_t e) { kt->bf16_to_f32(src + b, dst + b, e - b); });
  return dst;
}

void StoreF32(const CpuContext& ctx, const float* src, Tensor& dst, int64_t offset, int64_t count) {
  if (dst.dtype() == DType::kF32) {
    float* d = dst.data<float>() + offset;
    if (d != src) std::memcpy(d, src, static_cast<size_t>(count) * sizeof(float));
  } else {
    ctx.kernels->f32_to_bf16(src, dst.data<uint16_t>() + offset, count);
  }
}

float LoadScalar(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::kF32:
      return t.data<float>()[i];
    case DType::kBF16:
      return Bf16ToFloat(t.data<uint16_t>()[i]);
    case DType::kF16:
      return F16ToFloat(t.data<uint16_t>()[i]);
    default:
      return 0.0f;  // unreachable: validated by Backend
  }
}

void StoreScalar(Tensor& t, int64_t i, float v) {
  if (t.dtype() == DType::kF32) {
    t.data<float>()[i] = v;
  } else {
    t.data<uint16_t>()[i] = FloatToBf16(v);
  }
}

void LoadF32(const CpuContext& ctx, const Tensor& t, int64_t offset, int64_t count, float* dst) {
  switch (t.dtype()) {
    case DType::kF32:
      std::memcpy(dst, t.data<float>() + offset, static_cast<size_t>(count) * sizeof(float));
      return;
    case DType::kBF16:
      ctx.kernels->bf16_to_f32(t.data<uint16_t>() + offset, dst, count);
      return;
    default:
      for (int64_t i = 0; i < count; ++i) dst[i] = LoadScalar(t, offset + i);
  }
}

namespace {
// The row loops of RMSNorm, built for the x86-64 baseline and for AVX2 and AVX-512
// (row_loops.h): the vector widths change no bits, each value sees the same operations in the
// same order (lane i % 8's sum below included).

EXPERTMESH_ROW_LOOP void AddInto(float* h, const float* r, int64_t n) {
  for (int64_t i = 0; i < n; ++i) h[i] += r[i];
}
EXPERTMESH_ROW_LOOP void ScaleRow(float* h, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) h[i] *= s;
}
EXPERTMESH_ROW_LOOP void MulInto(float* h, const float* w, int64_t n) {
  for (int64_t i = 0; i < n; ++i) h[i] *= w[i];
}

// sum h[i]^2 in double, in 8 interleaved partial sums (lane i % 8) added at the end: one chain
// of dependent adds over the row (one per element) held the whole RMSNorm to the add latency.
EXPERTMESH_ROW_LOOP double SumOfSquares(const float* h, int64_t n) {
  double lanes[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) lanes[l] += static_cast<double>(h[i + l]) * h[i + l];
  }
  for (; i < n; ++i) lanes[i % 8] += static_cast<double>(h[i]) * h[i];
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
         ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

// Rows per ParallelFor chunk for a row-wise op over rows x dim values: chunks of at least ~8K
// values (a per-head q/k norm of 128 values a row in chunks of 4 rows spent more on handing out
// chunks than on the norms), but no fewer chunks than threads while there are rows to spread.
int64_t RowsPerChunk(int64_t rows, int64_t dim, int threads) {
  const int64_t by_size = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, dim));
  const int64_t by_threads = std::max<int64_t>(1, (rows + threads - 1) / threads);
  return std::min(by_size, by_threads);
}

// fp32 -> the compute dtype and back: what storing an intermediate in that dtype does.
inline float RoundTo(DType dtype, float v) {
  return dtype == DType::kBF16 ? Bf16ToFloat(FloatToBf16(v)) : v;
}
}  // namespace

absl::Status CpuEmbedding(const CpuContext& ctx, const Tensor& table, const Tensor& ids,
                          Tensor& out) {
  const int64_t n = ids.dim(0), vocab = table.dim(0), hidden = table.dim(1);
  const int32_t* id = ids.data<int32_t>();
  for (int64_t t = 0; t < n; ++t) {
    if (id[t] < 0 || id[t] >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("embedding: token id ", id[t], " at position ",
                                                     t, " is outside the vocabulary [0, ", vocab,
                                                     ")"));
    }
  }
  ctx.pool->ParallelFor(n, 1, [&](int64_t b, int64_t e) {
    std::vector<float> row(static_cast<size_t>(hidden));
    for (int64_t t = b; t < e; ++t) {
      const int64_t src = static_cast<int64_t>(id[t]) * hidden;
      if (table.dtype() == out.dtype()) {
        const size_t bytes = static_cast<size_t>(hidden) * DTypeSize(out.dtype());
        std::memcpy(static_cast<char*>(out.raw_data()) + t * bytes,
                    static_cast<const char*>(table.raw_data()) + src * DTypeSize(table.dtype()),
                    bytes);
        continue;
      }
      if (table.dtype() == DType::kBF16) {
        ctx.kernels->bf16_to_f32(table.data<uint16_t>() + src, row.data(), hidden);
      } else {
        for (int64_t i = 0; i < hidden; ++i) row[i] = LoadScalar(table, src + i);
      }
      StoreF32(ctx, row.data(), out, t * hidden, hidden);
    }
  });
  return absl::OkStatus();
}

absl::Status CpuRmsNorm(const CpuContext& ctx, const Tensor& x, Tensor* residual,
                        const Tensor& weight, float eps, Tensor& out) {
  const int64_t rows = x.dim(0), dim = x.dim(1);
  const DType cdt = out.dtype();
  std::vector<float> wscratch;
  const float* w = AsF32(ctx, weight, wscratch);
  ctx.pool->ParallelFor(
      rows, RowsPerChunk(rows, dim, ctx.pool->num_threads()), [&](int64_t b, int64_t e) {
        thread_local std::vector<float> h, res;
        thread_local std::vector<uint16_t> bf16;
        h.resize(static_cast<size_t>(dim));
        res.resize(static_cast<size_t>(dim));
        bf16.resize(static_cast<size_t>(dim));
        // RoundTo(kBF16, .) over the row with the table's vector conversions (the same bits as the
        // scalar one, which as a loop of its own took most of this op's time).
        const auto round_to_bf16 = [&](float* v) {
          ctx.kernels->f32_to_bf16(v, bf16.data(), dim);
          ctx.kernels->bf16_to_f32(bf16.data(), v, dim);
        };
        for (int64_t r = b; r < e; ++r) {
          const int64_t base = r * dim;
          LoadF32(ctx, x, base, dim, h.data());
          if (residual != nullptr) {
            // HF: hidden = residual + hidden, in the model dtype; the sum is the new residual.
            LoadF32(ctx, *residual, base, dim, res.data());
            AddInto(h.data(), res.data(), dim);
            if (residual->dtype() == DType::kBF16) round_to_bf16(h.data());
            StoreF32(ctx, h.data(), *residual, base, dim);
          }
          const double sum_sq = SumOfSquares(h.data(), dim);
          const float variance = static_cast<float>(sum_sq / static_cast<double>(dim));
          const float inv_rms = 1.0f / std::sqrt(variance + eps);
          ScaleRow(h.data(), inv_rms, dim);
          if (cdt == DType::kBF16) round_to_bf16(h.data());
          MulInto(h.data(), w, dim);
          StoreF32(ctx, h.data(), out, base, dim);
        }
      });
  return absl::OkStatus();
}

absl::Status CpuSiluMul(const CpuContext& ctx, const Tensor& gate_up, Tensor& out) {
  const int64_t n = out.dim(0), inter = out.dim(1);
  const DType cdt = out.dtype();
  ctx.pool->ParallelFor(n, RowsPerChunk(n, 2 * inter, ctx.pool->num_threads()),
                        [&](int64_t b, int64_t e) {
                          thread_local std::vector<float> row;
                          row.resize(static_cast<size_t>(2 * inter));
                          for (int64_t t = b; t < e; ++t) {
                            LoadF32(ctx, gate_up, t * 2 * inter, 2 * inter, row.data());
                            for (int64_t i = 0; i < inter; ++i) {
                              const float g = row[i];
                              // HF: act_fn(gate) is materialised in the model dtype before the
                              // multiply.
                              const float silu = RoundTo(cdt, g / (1.0f + std::exp(-g)));
                              row[i] = silu * row[inter + i];
                            }
                            StoreF32(ctx, row.data(), out, t * inter, inter);
                          }
                        });
  return absl::OkStatus();
}

}  // namespace expertmesh::kernels::cpu
