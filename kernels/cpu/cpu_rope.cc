// Rotary embedding in place, for the three pairings of kernels::RopeStyle.
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/cpu_ops.h"

namespace expertmesh::kernels::cpu {
namespace {

// Rotates the slice [offset, offset + r) of every head of token t.
void RotateToken(const CpuContext& ctx, const float* cs, const kernels::RopeParams& p, Tensor& x,
                 int64_t t, std::vector<float>& slice, std::vector<float>& rotated) {
  const int64_t heads = x.dim(1), head_dim = x.dim(2);
  const int r = p.rotary_dim, half = r / 2;
  const float* cos = cs;
  const float* sin = cs + half;
  for (int64_t h = 0; h < heads; ++h) {
    const int64_t base = (t * heads + h) * head_dim + p.rotary_offset;
    LoadF32(ctx, x, base, r, slice.data());
    switch (p.style) {
      case kernels::RopeStyle::kNeox:
      case kernels::RopeStyle::kDeinterleaveNeox: {
        if (p.style == kernels::RopeStyle::kDeinterleaveNeox) {
          // HF apply_rotary_pos_emb_interleave: view(d/2, 2).transpose -> evens, then odds.
          for (int i = 0; i < half; ++i) {
            rotated[i] = slice[2 * i];
            rotated[half + i] = slice[2 * i + 1];
          }
          slice.swap(rotated);
        }
        for (int i = 0; i < half; ++i) {
          const float x1 = slice[i], x2 = slice[half + i];
          rotated[i] = x1 * cos[i] - x2 * sin[i];
          rotated[half + i] = x2 * cos[i] + x1 * sin[i];
        }
        break;
      }
      case kernels::RopeStyle::kInterleaved:
        for (int i = 0; i < half; ++i) {
          const float x1 = slice[2 * i], x2 = slice[2 * i + 1];
          rotated[2 * i] = x1 * cos[i] - x2 * sin[i];
          rotated[2 * i + 1] = x2 * cos[i] + x1 * sin[i];
        }
        break;
    }
    StoreF32(ctx, rotated.data(), x, base, r);
  }
}

}  // namespace

absl::Status CpuRope(const CpuContext& ctx, const Tensor& cos_sin, const Tensor& positions,
                     const kernels::RopeParams& params, Tensor& q, Tensor& k) {
  const int64_t n = positions.dim(0), max_pos = cos_sin.dim(0);
  const int32_t* pos = positions.data<int32_t>();
  for (int64_t t = 0; t < n; ++t) {
    if (pos[t] < 0 || pos[t] >= max_pos) {
      return absl::InvalidArgumentError(absl::StrCat("rope: position ", pos[t], " of token ", t,
                                                     " is outside the cache [0, ", max_pos, ")"));
    }
  }
  ctx.pool->ParallelFor(n, 4, [&](int64_t b, int64_t e) {
    std::vector<float> slice(params.rotary_dim), rotated(params.rotary_dim);
    for (int64_t t = b; t < e; ++t) {
      const float* cs = cos_sin.data<float>() + static_cast<int64_t>(pos[t]) * params.rotary_dim;
      RotateToken(ctx, cs, params, q, t, slice, rotated);
      if (k.defined()) RotateToken(ctx, cs, params, k, t, slice, rotated);
    }
  });
  return absl::OkStatus();
}

}  // namespace expertmesh::kernels::cpu
