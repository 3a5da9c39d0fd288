// Flash attention on AMX tiles: both products of a key block (scores Q K^T and the
// probability-weighted values P V) are TDPBF16PS tile products, the online softmax between
// them runs on AVX-512. Compiled with -mamx-tile -mamx-bf16 -mavx512bf16 -mavx512bw; runs only
// where UseAmx() (the AMX family, whose backend asked Linux for the tile state).
//
// Operands, per tile and key block of kKeyBlock positions:
//  - Q (A operand): the tile's rows as bf16, dk zero-padded to whole 32-value tiles and rows to
//    16; copied once per tile.
//  - K^T (B operand): the block's key rows copied together, then transposed into the pair
//    layout (B row i holds, for 16 keys, their values 2i and 2i + 1). Once per tile and block,
//    shared by all its rows (256 at group 8).
//  - P (A operand): the probabilities as bf16, row-major, straight from the softmax.
//  - V (B operand): value rows 2i and 2i + 1 interleaved per column (one permute per 32 values).
// Every score is a chain of dk / 32 tile products, and each block adds to a row's accumulator
// (rescaled on AVX-512 first when its maximum moved) a chain of kKeyBlock / 32 tile products
// over a zero-padded block, whichever rows share the tile, so rows stay independent of their
// batch (flash_attention.h). Probabilities are rounded to bf16 for the
// value product (as GPU flash attention does); the running sum adds them in fp32.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/amx_tiles.h"
#include "kernels/cpu/flash_attention.h"

namespace expertmesh::kernels::cpu::flash {
namespace {

constexpr int64_t kT = amx::kTileRows;  // 16: rows of every tile, fp32 columns of a C tile
constexpr int64_t kK = amx::kTileK;     // 32: bf16 values per A-tile row
constexpr int64_t kTileElems = kAmxPackedTileElems;  // bf16 values in one 16 x 64-byte tile
constexpr int64_t kKb = kKeyBlock;
static_assert(kKb % (2 * kK) == 0, "a key block is whole pairs of 32-key tiles");

inline int64_t RoundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// C[MA*16 rows][2*16 cols] (+)= sum over k tiles of A[rows][32 k] x B[32 k][cols], in c (row
// stride ldc floats): from zero, or from what c holds (kAccumulate). A: row stride lda elements,
// k tile kt at a + kt * 32. B: tile (kt, n) at b + kt * b_k + n * b_n elements (pair layout,
// 64-byte rows). Tiles: C 0-3, A 4-5, B 6-7.
template <int MA, bool kAccumulate>
inline void TileProduct(const uint16_t* a, int64_t lda, const uint16_t* b, int64_t b_k, int64_t b_n,
                        int64_t k_tiles, float* c, int64_t ldc) {
  if constexpr (kAccumulate) {
    _tile_loadd(0, c, ldc * 4);
    _tile_loadd(1, c + kT, ldc * 4);
    if constexpr (MA == 2) {
      _tile_loadd(2, c + kT * ldc, ldc * 4);
      _tile_loadd(3, c + kT * ldc + kT, ldc * 4);
    }
  } else {
    _tile_zero(0);
    _tile_zero(1);
    if constexpr (MA == 2) {
      _tile_zero(2);
      _tile_zero(3);
    }
  }
  for (int64_t kt = 0; kt < k_tiles; ++kt) {
    _tile_loadd(4, a + kt * kK, lda * 2);
    _tile_loadd(6, b + kt * b_k, 64);
    _tile_loadd(7, b + kt * b_k + b_n, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    if constexpr (MA == 2) {
      _tile_loadd(5, a + kT * lda + kt * kK, lda * 2);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
  }
  _tile_stored(0, c, ldc * 4);
  _tile_stored(1, c + kT, ldc * 4);
  if constexpr (MA == 2) {
    _tile_stored(2, c + kT * ldc, ldc * 4);
    _tile_stored(3, c + kT * ldc + kT, ldc * 4);
  }
}

// All row blocks (rows_pad a multiple of 16) times column tile pairs [0, n_tiles).
template <bool kAccumulate>
inline void Product(int64_t rows_pad, const uint16_t* a, int64_t lda, const uint16_t* b,
                    int64_t b_k, int64_t b_n, int64_t n_tiles, int64_t k_tiles, float* c,
                    int64_t ldc) {
  for (int64_t r = 0; r < rows_pad; r += 2 * kT) {
    for (int64_t n = 0; n < n_tiles; n += 2) {
      float* cr = c + r * ldc + n * kT;
      if (r + 2 * kT <= rows_pad) {
        TileProduct<2, kAccumulate>(a + r * lda, lda, b + n * b_n, b_k, b_n, k_tiles, cr, ldc);
      } else {
        TileProduct<1, kAccumulate>(a + r * lda, lda, b + n * b_n, b_k, b_n, k_tiles, cr, ldc);
      }
    }
  }
}

// 2^x for x <= 0 on 16 lanes (~2 ulp): a degree-6 polynomial of 2^f on [-1/2, 1/2], scaled by
// 2^n with VSCALEFPS. Lanes below -126 are clamped (2^-126 never changes an fp32 sum of ones).
inline __m512 Exp2(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-126.0f));
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 y = _mm512_mul_ps(_mm512_sub_ps(x, n), _mm512_set1_ps(0.693147180559945309f));
  __m512 poly = _mm512_set1_ps(1.0f / 720.0f);
  poly = _mm512_fmadd_ps(poly, y, _mm512_set1_ps(1.0f / 120.0f));
  poly = _mm512_fmadd_ps(poly, y, _mm512_set1_ps(1.0f / 24.0f));
  poly = _mm512_fmadd_ps(poly, y, _mm512_set1_ps(1.0f / 6.0f));
  poly = _mm512_fmadd_ps(poly, y, _mm512_set1_ps(0.5f));
  poly = _mm512_fmadd_ps(poly, y, _mm512_set1_ps(1.0f));
  poly = _mm512_fmadd_ps(poly, y, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(poly, n);
}

// Lanes j < count of 16.
inline __mmask16 FirstLanes(int64_t count) {
  return count >= 16 ? __mmask16{0xffff}
                     : static_cast<__mmask16>((1u << std::max<int64_t>(count, 0)) - 1);
}

// The buffers of one thread (reused across tiles: a prefill's tiles are ~1 MiB in all).
struct Scratch {
  std::vector<uint16_t> q, k_rows, k_packed, v_packed, p;
  std::vector<float> s, o, m, l, alpha, saved;
};

}  // namespace

void RunTileAmx(const Params& p, const Tile& t, int64_t kvh, float* out) {
  thread_local Scratch sc;
  const int64_t group = p.group, dk = p.dk, dv = p.dv, rows = t.count * group;
  const int64_t rows_pad = RoundUp(rows, kT), dkp = RoundUp(dk, kK), dvp = RoundUp(dv, 2 * kT);
  const int64_t k_tiles = dkp / kK, d_tiles = dvp / kT;
  const auto* q = static_cast<const uint16_t*>(p.q);
  const auto* kc = static_cast<const uint16_t*>(p.k);
  const auto* vc = static_cast<const uint16_t*>(p.v);

  sc.q.assign(rows_pad * dkp, 0);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t src = ((t.first_token + r / group) * p.q_heads + kvh * group + r % group) * dk;
    std::memcpy(sc.q.data() + r * dkp, q + src, dk * 2);
  }
  sc.k_rows.assign(kKb * dkp, 0);
  sc.k_packed.resize(kKb * dkp);
  sc.v_packed.resize(kKb * dvp);
  sc.p.assign(rows_pad * kKb, 0);
  sc.s.resize(rows_pad * kKb);
  sc.o.assign(rows_pad * dvp, 0.0f);
  sc.m.assign(rows, -std::numeric_limits<float>::infinity());
  sc.l.assign(rows, 0.0f);
  sc.alpha.resize(rows);
  // Scores in the base-2 domain: exp(scale * s - max) = 2^(c * s - max2).
  const __m512 c = _mm512_set1_ps(p.scale * 1.44269504088896341f);
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  // Word 2i of a permute takes a[i], word 2i + 1 takes b[i] (index 32 + i).
  alignas(64) static const uint16_t kInterleave[32] = {0,  32, 1,  33, 2,  34, 3,  35, 4,  36, 5,
                                                       37, 6,  38, 7,  39, 8,  40, 9,  41, 10, 42,
                                                       11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  const __m512i interleave_lo = _mm512_load_si512(kInterleave);
  const __m512i interleave_hi = _mm512_add_epi16(interleave_lo, _mm512_set1_epi16(16));
  const __m512i pair_rows =
      _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                         _mm512_set1_epi32(static_cast<int>(dkp / 2)));

  _tile_loadconfig(&amx::Config());
  const int64_t end = t.first_pos + t.count;
  for (int64_t key0 = 0; key0 < end; key0 += kKb) {
    const int64_t nk = std::min(kKb, end - key0);
    // K^T: key rows side by side (zero past nk and dk), then each 16 keys x 32 values turned
    // into a pair-layout tile with 16 gathers: tile (key group g, k tile kt) at
    // (g * k_tiles + kt) * kTileElems.
    for (int64_t j = 0; j < kKb; ++j) {
      uint16_t* dst = sc.k_rows.data() + j * dkp;
      if (j < nk) {
        std::memcpy(dst, kc + CacheRow(p, t, kvh, key0 + j) * dk, dk * 2);
      } else {
        std::memset(dst, 0, dk * 2);
      }
    }
    for (int64_t g = 0; g < kKb / kT; ++g) {
      for (int64_t kt = 0; kt < k_tiles; ++kt) {
        auto* tile =
            reinterpret_cast<int32_t*>(sc.k_packed.data() + (g * k_tiles + kt) * kTileElems);
        const uint16_t* src = sc.k_rows.data() + g * kT * dkp + kt * kK;
        for (int i = 0; i < kT; ++i) {
          _mm512_storeu_si512(tile + i * kT, _mm512_i32gather_epi32(pair_rows, src + 2 * i, 4));
        }
      }
    }
    // Scores S[rows_pad][kKb].
    Product<false>(rows_pad, sc.q.data(), dkp, sc.k_packed.data(), kTileElems, k_tiles * kTileElems,
                   kKb / kT, k_tiles, sc.s.data(), kKb);

    // Online softmax per row, 16 keys a vector; masked lanes are -inf before and 0 after.
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t visible = std::min(nk, t.first_pos + r / group - key0 + 1);
      uint16_t* prow = sc.p.data() + r * kKb;
      if (visible <= 0) {  // the block lies wholly past this row: leave its state alone
        sc.alpha[r] = -1.0f;
        std::memset(prow, 0, kKb * 2);
        continue;
      }
      const float* srow = sc.s.data() + r * kKb;
      __m512 x[kKb / kT];
      __m512 mx = neg_inf;
      for (int64_t v = 0; v < kKb / kT; ++v) {
        x[v] = _mm512_mask_mul_ps(neg_inf, FirstLanes(visible - v * kT),
                                  _mm512_loadu_ps(srow + v * kT), c);
        mx = _mm512_max_ps(mx, x[v]);
      }
      const float m_new = std::max(sc.m[r], _mm512_reduce_max_ps(mx));
      const __m512 m_vec = _mm512_set1_ps(m_new);
      __m512 sum = _mm512_setzero_ps();
      for (int64_t v = 0; v < kKb / kT; v += 2) {
        const __m512 p0 =
            _mm512_maskz_mov_ps(FirstLanes(visible - v * kT), Exp2(_mm512_sub_ps(x[v], m_vec)));
        const __m512 p1 = _mm512_maskz_mov_ps(FirstLanes(visible - (v + 1) * kT),
                                              Exp2(_mm512_sub_ps(x[v + 1], m_vec)));
        sum = _mm512_add_ps(sum, _mm512_add_ps(p0, p1));
        _mm512_storeu_si512(prow + v * kT, (__m512i)_mm512_cvtne2ps_pbh(p1, p0));
      }
      const float a =
          sc.m[r] == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp2(sc.m[r] - m_new);
      sc.alpha[r] = a;
      sc.l[r] = sc.l[r] * a + _mm512_reduce_add_ps(sum);
      sc.m[r] = m_new;
    }

    // V in pair layout: tile (key tile kt, column tile n) at (kt * d_tiles + n) * kTileElems;
    // its row i interleaves value rows 2i and 2i + 1 of the key tile (zero past nk and dv).
    for (int64_t kt = 0; kt < kKb / kK; ++kt) {
      for (int64_t i = 0; i < kT; ++i) {
        const int64_t j0 = key0 + kt * kK + 2 * i;
        const uint16_t* v0 = j0 < key0 + nk ? vc + CacheRow(p, t, kvh, j0) * dv : nullptr;
        const uint16_t* v1 = j0 + 1 < key0 + nk ? vc + CacheRow(p, t, kvh, j0 + 1) * dv : nullptr;
        for (int64_t n = 0; n < d_tiles; n += 2) {
          const __mmask32 lanes =
              dv - n * kT >= 2 * kT ? ~__mmask32{0} : (__mmask32{1} << (dv - n * kT)) - 1;
          const __m512i a0 =
              v0 ? _mm512_maskz_loadu_epi16(lanes, v0 + n * kT) : _mm512_setzero_si512();
          const __m512i a1 =
              v1 ? _mm512_maskz_loadu_epi16(lanes, v1 + n * kT) : _mm512_setzero_si512();
          uint16_t* tile = sc.v_packed.data() + (kt * d_tiles + n) * kTileElems + i * 2 * kT;
          _mm512_storeu_si512(tile, _mm512_permutex2var_epi16(a0, interleave_lo, a1));
          _mm512_storeu_si512(tile + kTileElems, _mm512_permutex2var_epi16(a0, interleave_hi, a1));
        }
      }
    }
    // O = alpha O + P V, the product accumulated onto O in the C tiles. Rows whose maximum did
    // not move (alpha 1, most of them after the first blocks) need no rescaling. Rows the block
    // lies wholly past have P = 0, but the tiles flush fp32 denormals, so their O is put back
    // as it was (they are the few early rows of a tile's last block).
    sc.saved.clear();
    for (int64_t r = 0; r < rows; ++r) {
      float* orow = sc.o.data() + r * dvp;
      if (sc.alpha[r] < 0.0f) {
        sc.saved.insert(sc.saved.end(), orow, orow + dvp);
      } else if (sc.alpha[r] != 1.0f) {
        const __m512 a = _mm512_set1_ps(sc.alpha[r]);
        for (int64_t d = 0; d < dvp; d += kT) {
          _mm512_storeu_ps(orow + d, _mm512_mul_ps(_mm512_loadu_ps(orow + d), a));
        }
      }
    }
    Product<true>(rows_pad, sc.p.data(), kKb, sc.v_packed.data(), d_tiles * kTileElems, kTileElems,
                  d_tiles, kKb / kK, sc.o.data(), dvp);
    if (!sc.saved.empty()) {
      const float* from = sc.saved.data();
      for (int64_t r = 0; r < rows; ++r) {
        if (sc.alpha[r] >= 0.0f) continue;
        std::memcpy(sc.o.data() + r * dvp, from, dvp * sizeof(float));
        from += dvp;
      }
    }
  }
  // Gives the tile state back so that context switches of this thread stop saving 8 KiB.
  _tile_release();
  for (int64_t r = 0; r < rows; ++r) {
    const __m512 inv = _mm512_set1_ps(1.0f / sc.l[r]);
    for (int64_t d = 0; d < dv; d += kT) {
      _mm512_mask_storeu_ps(out + r * dv + d, FirstLanes(dv - d),
                            _mm512_mul_ps(_mm512_loadu_ps(sc.o.data() + r * dvp + d), inv));
    }
  }
}

}  // namespace expertmesh::kernels::cpu::flash
