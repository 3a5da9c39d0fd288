// Microbenchmarks of the CPU backend's ops, reporting bandwidth (GB/s of weights or KV read)
// or GFLOP/s, next to the machine's measured memory read bandwidth (BM_MemoryReadBandwidth), so
// the fraction of the limit is visible. The production symbols are timed (CpuBackend ops).
//
//   build-engine/bin/cpu_kernels_bench --benchmark_min_time=0.5
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "common/dtype.h"
#include "kernels/cpu/cpu_backend.h"

namespace expertmesh {
namespace {

using kernels::Tensor;
using kernels::cpu::CpuBackend;
using kernels::cpu::CpuIsa;

// 2 threads, or EXPERTMESH_BENCH_THREADS (1 measures one core's compute where another process
// holds the other core).
int Threads() {
  const char* env = std::getenv("EXPERTMESH_BENCH_THREADS");
  return env != nullptr && std::atoi(env) > 0 ? std::atoi(env) : 2;
}

std::unique_ptr<CpuBackend> MakeBackend(CpuIsa isa, int64_t blas_min_tokens = 64) {
  kernels::cpu::CpuBackendOptions options;
  options.num_threads = Threads();
  options.isa = isa;
  options.blas_min_tokens = blas_min_tokens;
  return std::move(*CpuBackend::Create(options));
}

Tensor Random(DType dtype, std::initializer_list<int64_t> shape, uint32_t seed) {
  Tensor t = *Tensor::Empty(dtype, shape);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (dtype == DType::kF32) {
      t.data<float>()[i] = dist(rng);
    } else {
      t.data<uint16_t>()[i] = FloatToBf16(dist(rng));
    }
  }
  return t;
}

void SetGbps(benchmark::State& state, double bytes_per_iter) {
  state.counters["GB/s"] =
      benchmark::Counter(bytes_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
void SetGflops(benchmark::State& state, double flop_per_iter) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flop_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// The roof: summing a 256 MiB buffer with the same thread count, through the backend's pool.
void BM_MemoryReadBandwidth(benchmark::State& state) {
  const int64_t n = (256ll << 20) / 4;
  std::vector<float> buf(n, 1.0f);
  kernels::cpu::ThreadPool pool(Threads());
  for (auto _ : state) {
    std::vector<double> partial(64, 0.0);
    pool.ParallelFor(n, n / 64, [&](int64_t b, int64_t e) {
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t i = b; i + 8 <= e; i += 8) {
        for (int j = 0; j < 8; ++j) acc[j] += buf[i + j];
      }
      partial[b / (n / 64)] = acc[0] + acc[1] + acc[2] + acc[3] + acc[4] + acc[5] + acc[6] + acc[7];
    });
    benchmark::DoNotOptimize(partial.data());
  }
  SetGbps(state, static_cast<double>(n) * 4);
}
BENCHMARK(BM_MemoryReadBandwidth)->Unit(benchmark::kMillisecond)->UseRealTime();

// Decode-sized linear: 64 MiB of bf16 weights (beyond the 32 MiB L3), args: tokens, isa.
void BM_LinearDecode(benchmark::State& state) {
  const int64_t n = state.range(0), in = 2048, out = 16384;
  auto backend = MakeBackend(static_cast<CpuIsa>(state.range(1)));
  Tensor w = Random(DType::kBF16, {out, in}, 1);
  Tensor x = Random(DType::kF32, {n, in}, 2);
  Tensor y = *Tensor::Empty(DType::kF32, {n, out});
  for (auto _ : state) {
    if (!backend->Linear(x, w, Tensor(), y).ok()) state.SkipWithError("linear failed");
  }
  SetGbps(state, static_cast<double>(w.nbytes()));
  SetGflops(state, 2.0 * n * in * out);
}
BENCHMARK(BM_LinearDecode)
    ->ArgsProduct({{1, 2, 4, 8, 16, 32}, {static_cast<int>(CpuIsa::kAvx2)}})
    ->Args({1, static_cast<int>(CpuIsa::kScalar)})
    ->Args({8, static_cast<int>(CpuIsa::kScalar)})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The same decode linear with bf16 activations (bf16 compute mode), per kernel family: on
// AVX512_BF16 CPUs these run the bf16 x bf16 dot-product kernel. Args: tokens, CpuIsa.
void BM_LinearDecodeBf16(benchmark::State& state) {
  const int64_t n = state.range(0), in = 2048, out = 4096;
  const auto isa = static_cast<CpuIsa>(state.range(1));
  if (!expertmesh::kernels::cpu::CpuSupports(isa)) {
    state.SkipWithError("this CPU lacks the kernel family");
    return;
  }
  auto backend = MakeBackend(isa);
  Tensor w = Random(DType::kBF16, {out, in}, 1);
  Tensor x = Random(DType::kBF16, {n, in}, 2);
  Tensor y = *Tensor::Empty(DType::kBF16, {n, out});
  for (auto _ : state) {
    if (!backend->Linear(x, w, Tensor(), y).ok()) state.SkipWithError("linear failed");
  }
  SetGbps(state, static_cast<double>(w.nbytes()));
  SetGflops(state, 2.0 * n * in * out);
}
BENCHMARK(BM_LinearDecodeBf16)
    ->ArgsProduct({{1, 8, 32},
                   {static_cast<int>(CpuIsa::kAvx2), static_cast<int>(CpuIsa::kAvx512),
                    static_cast<int>(CpuIsa::kAvx512Bf16)}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// bf16 x bf16 linear from one token to a prefill, AVX512_BF16 dot products against AMX tiles:
// 64 MiB of weights (2048 x 16384), so that few tokens read them from memory. Args: tokens,
// CpuIsa. Run with --benchmark_repetitions=3 --benchmark_enable_random_interleaving to
// alternate the families on a loaded machine.
void BM_LinearBf16Families(benchmark::State& state) {
  const int64_t n = state.range(0), in = 2048, out = 16384;
  const auto isa = static_cast<CpuIsa>(state.range(1));
  if (!expertmesh::kernels::cpu::CpuSupports(isa)) {
    state.SkipWithError("this CPU lacks the kernel family");
    return;
  }
  auto backend = MakeBackend(isa);
  Tensor w = Random(DType::kBF16, {out, in}, 1);
  Tensor x = Random(DType::kBF16, {n, in}, 2);
  Tensor y = *Tensor::Empty(DType::kBF16, {n, out});
  for (auto _ : state) {
    if (!backend->Linear(x, w, Tensor(), y).ok()) state.SkipWithError("linear failed");
  }
  SetGbps(state, static_cast<double>(w.nbytes()));
  SetGflops(state, 2.0 * n * in * out);
}
BENCHMARK(BM_LinearBf16Families)
    ->ArgsProduct({{1, 2, 4, 8, 16, 32, 64, 256, 1024},
                   {static_cast<int>(CpuIsa::kAvx512Bf16), static_cast<int>(CpuIsa::kAmx)}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// An fp8 e4m3 weight [rows, cols] with 128 x 128 block scales, as checkpoints publish them.
Tensor RandomFp8(int64_t rows, int64_t cols, uint32_t seed) {
  Tensor w = *Tensor::Empty(DType::kF8E4M3, {rows, cols});
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int64_t i = 0; i < w.numel(); ++i) {
    const int b = byte(rng);
    w.data<uint8_t>()[i] = static_cast<uint8_t>((b & 0x7f) == 0x7f ? b - 1 : b);  // no NaN
  }
  auto grid = std::make_shared<Tensor>(
      *Tensor::Empty(DType::kF32, {(rows + 127) / 128, (cols + 127) / 128}));
  for (int64_t i = 0; i < grid->numel(); ++i) grid->data<float>()[i] = 1.0f / 448;
  return *w.WithBlockScales({.scales = grid, .block_rows = 128, .block_cols = 128});
}

// The same 2048 x 16384 linear as BM_LinearBf16Families with bf16 (0) or fp8 (1) weights: fp8
// reads half the bytes, so at few tokens it should run up to twice as fast. Args: tokens,
// CpuIsa, weight dtype.
void BM_LinearFp8Families(benchmark::State& state) {
  const int64_t n = state.range(0), in = 2048, out = 16384;
  const auto isa = static_cast<CpuIsa>(state.range(1));
  if (!expertmesh::kernels::cpu::CpuSupports(isa)) {
    state.SkipWithError("this CPU lacks the kernel family");
    return;
  }
  auto backend = MakeBackend(isa);
  Tensor w = state.range(2) != 0 ? RandomFp8(out, in, 1) : Random(DType::kBF16, {out, in}, 1);
  Tensor x = Random(DType::kBF16, {n, in}, 2);
  Tensor y = *Tensor::Empty(DType::kBF16, {n, out});
  for (auto _ : state) {
    if (!backend->Linear(x, w, Tensor(), y).ok()) state.SkipWithError("linear failed");
  }
  SetGbps(state, static_cast<double>(w.nbytes()));
  SetGflops(state, 2.0 * n * in * out);
}
BENCHMARK(BM_LinearFp8Families)
    ->ArgsProduct({{1, 4, 8, 16, 32, 256},
                   {static_cast<int>(CpuIsa::kAvx512Bf16), static_cast<int>(CpuIsa::kAmx)},
                   {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Each of n tokens routed to top_k distinct experts drawn at random (a fixed seed): [n, top_k].
Tensor RandomTopK(int64_t n, int64_t experts, int64_t top_k) {
  std::mt19937 rng(5);
  Tensor ids = *Tensor::Empty(DType::kI32, {n, top_k});
  for (int64_t t = 0; t < n; ++t) {
    std::vector<int32_t> perm(experts);
    for (int e = 0; e < experts; ++e) perm[e] = e;
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int j = 0; j < top_k; ++j) ids.data<int32_t>()[t * top_k + j] = perm[j];
  }
  return ids;
}

// Batched decode's expert products as the engine runs them: bench-1b's MoE layers (32 experts of
// [768, 2048] gate|up, top-8, Qwen3-MoE widths), 8 layers one after the other so that their
// weights (fp8 400 MB, bf16 800 MB) come from memory as between a decode step's layers, each
// expert with the tokens a random top-8 routing of n tokens gives it (~n / 4). Args: tokens,
// weight dtype (0 bf16, 1 fp8). On AVX512_BF16, bf16 activations.
void BM_MoeExperts(benchmark::State& state) {
  const int64_t n = state.range(0), experts = 32, top_k = 8, hidden = 2048, inter2 = 768;
  const int64_t layers = 8;
  if (!expertmesh::kernels::cpu::CpuSupports(CpuIsa::kAvx512Bf16)) {
    state.SkipWithError("this CPU lacks the kernel family");
    return;
  }
  auto backend = MakeBackend(CpuIsa::kAvx512Bf16);
  const bool fp8 = state.range(1) != 0;
  std::vector<std::vector<Tensor>> w(layers);
  for (int64_t l = 0; l < layers; ++l) {
    for (int64_t e = 0; e < experts; ++e) {
      const auto seed = static_cast<uint32_t>(100 + l * experts + e);
      w[l].push_back(fp8 ? RandomFp8(inter2, hidden, seed)
                         : Random(DType::kBF16, {inter2, hidden}, seed));
    }
  }
  Tensor ids = RandomTopK(n, experts, top_k);
  Tensor x = Random(DType::kBF16, {n, hidden}, 3);
  Tensor px = *Tensor::Empty(DType::kBF16, {n * top_k, hidden});
  Tensor off = *Tensor::Empty(DType::kI32, {experts + 1});
  Tensor slots = *Tensor::Empty(DType::kI32, {n * top_k});
  Tensor y = *Tensor::Empty(DType::kBF16, {n * top_k, inter2});
  (void)backend->MoePermute(x, ids, experts, px, off, slots);
  for (auto _ : state) {
    for (int64_t l = 0; l < layers; ++l) {
      if (!backend->MoeGroupedLinear(px, off, w[l], y).ok()) state.SkipWithError("grouped failed");
    }
  }
  SetGflops(state, 2.0 * layers * n * top_k * hidden * inter2);
}
BENCHMARK(BM_MoeExperts)
    ->ArgsProduct({{4, 16, 32, 128, 512}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Both products of the experts' MLPs as batched decode runs them, gate|up [2 x inter, 2048] then
// down [2048, inter], top-8 routing of n tokens, layer after layer from memory. Shapes: 0 is
// bench-1b's 8 layers of 32 experts with inter = 384 (~n / 4 tokens per expert; k = 384 for
// down: few steps of k per lane sum), 1 Qwen3-30B-A3B's 2 layers of 128 experts with inter = 768
// (~n / 16 tokens each: at 32 tokens nearly every expert is read for one to five tokens). GB/s
// counts the bytes of the experts the routing touches. Args: tokens, dtype (0 bf16, 1 fp8),
// CpuIsa, shape.
void BM_MoeExpertMlp(benchmark::State& state) {
  const bool a3b = state.range(3) != 0;
  const int64_t n = state.range(0), experts = a3b ? 128 : 32, top_k = 8, hidden = 2048;
  const int64_t inter = a3b ? 768 : 384, layers = a3b ? 2 : 8;
  const bool fp8 = state.range(1) != 0;
  const auto isa = static_cast<CpuIsa>(state.range(2));
  if (!expertmesh::kernels::cpu::CpuSupports(isa)) {
    state.SkipWithError("this CPU lacks the kernel family");
    return;
  }
  auto backend = MakeBackend(isa);
  std::vector<std::vector<Tensor>> gate_up(layers), down(layers);
  for (int64_t l = 0; l < layers; ++l) {
    for (int64_t e = 0; e < experts; ++e) {
      const auto seed = static_cast<uint32_t>(100 + l * experts + e);
      gate_up[l].push_back(fp8 ? RandomFp8(2 * inter, hidden, seed)
                               : Random(DType::kBF16, {2 * inter, hidden}, seed));
      down[l].push_back(fp8 ? RandomFp8(hidden, inter, seed + 7777)
                            : Random(DType::kBF16, {hidden, inter}, seed + 7777));
    }
  }
  Tensor ids = RandomTopK(n, experts, top_k);
  Tensor x = Random(DType::kBF16, {n, hidden}, 3);
  Tensor px = *Tensor::Empty(DType::kBF16, {n * top_k, hidden});
  Tensor off = *Tensor::Empty(DType::kI32, {experts + 1});
  Tensor slots = *Tensor::Empty(DType::kI32, {n * top_k});
  Tensor y = *Tensor::Empty(DType::kBF16, {n * top_k, 2 * inter});
  Tensor act = Random(DType::kBF16, {n * top_k, inter}, 4);
  Tensor out = *Tensor::Empty(DType::kBF16, {n * top_k, hidden});
  (void)backend->MoePermute(x, ids, experts, px, off, slots);
  int64_t touched = 0;
  for (int64_t e = 0; e < experts; ++e)
    touched += off.data<int32_t>()[e + 1] > off.data<int32_t>()[e];
  for (auto _ : state) {
    for (int64_t l = 0; l < layers; ++l) {
      if (!backend->MoeGroupedLinear(px, off, gate_up[l], y).ok() ||
          !backend->MoeGroupedLinear(act, off, down[l], out).ok()) {
        state.SkipWithError("grouped failed");
      }
    }
  }
  SetGbps(state, static_cast<double>(layers * touched) *
                     static_cast<double>(gate_up[0][0].nbytes() + down[0][0].nbytes()));
  SetGflops(state, 2.0 * layers * n * top_k * 3 * hidden * inter);
}
BENCHMARK(BM_MoeExpertMlp)
    ->ArgsProduct({{8, 32, 128},
                   {0, 1},
                   {static_cast<int>(CpuIsa::kAvx2), static_cast<int>(CpuIsa::kAvx512Bf16)},
                   {0}})
    ->ArgsProduct({{1, 8, 32}, {0, 1}, {static_cast<int>(CpuIsa::kAvx512Bf16)}, {1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The element-wise ops of one batch-32 decode layer of a Qwen3-MoE model (bench-1b's widths):
// RMSNorm of the hidden states with the residual add, of the queries' and keys' heads (per-head
// q/k norm: 32 x (32 + 4) rows of 128) and SiLU-and-multiply of the experts' gate|up outputs
// (32 x 8 rows). Args: tokens.
void BM_DecodeElementwise(benchmark::State& state) {
  const int64_t n = state.range(0), hidden = 2048, head_dim = 128, heads = 36, inter = 384;
  auto backend = MakeBackend(expertmesh::kernels::cpu::BestCpuIsa());
  Tensor x = Random(DType::kBF16, {n, hidden}, 1);
  Tensor residual = Random(DType::kBF16, {n, hidden}, 2);
  Tensor norm_w = Random(DType::kBF16, {hidden}, 3);
  Tensor heads_x = Random(DType::kBF16, {n * heads, head_dim}, 4);
  Tensor head_w = Random(DType::kBF16, {head_dim}, 5);
  Tensor gate_up = Random(DType::kBF16, {n * 8, 2 * inter}, 6);
  Tensor h = *Tensor::Empty(DType::kBF16, {n, hidden});
  Tensor heads_out = *Tensor::Empty(DType::kBF16, {n * heads, head_dim});
  Tensor act = *Tensor::Empty(DType::kBF16, {n * 8, inter});
  for (auto _ : state) {
    if (!backend->RmsNorm(x, &residual, norm_w, 1e-6f, h).ok() ||
        !backend->RmsNorm(heads_x, nullptr, head_w, 1e-6f, heads_out).ok() ||
        !backend->RmsNorm(x, &residual, norm_w, 1e-6f, h).ok() ||
        !backend->SiluMul(gate_up, act).ok()) {
      state.SkipWithError("element-wise op failed");
    }
  }
}
BENCHMARK(BM_DecodeElementwise)->Arg(1)->Arg(32)->Unit(benchmark::kMicrosecond)->UseRealTime();

// A q4 weight [rows, cols] in groups of 128 along each row, symmetric, as compressed-tensors
// and GPTQ checkpoints publish them (after the loader's repacking).
Tensor RandomQ4(int64_t rows, int64_t cols, uint32_t seed) {
  Tensor w = *Tensor::Empty(DType::kQ4, {rows, cols});
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  for (size_t i = 0; i < w.nbytes(); ++i) w.data<uint8_t>()[i] = static_cast<uint8_t>(byte(rng));
  auto grid = std::make_shared<Tensor>(*Tensor::Empty(DType::kF32, {rows, cols / 128}));
  for (int64_t i = 0; i < grid->numel(); ++i) grid->data<float>()[i] = 0.01f;
  return *w.WithBlockScales({.scales = grid, .block_rows = 1, .block_cols = 128});
}

// The 2048 x 16384 linear with bf16 (0), fp8 (1) or q4 (2) weights. Bytes read count the block
// scales (q4: 4 bytes per group of 128, 1/16 of the packed values). Args: tokens, CpuIsa, dtype.
void BM_LinearQ4Families(benchmark::State& state) {
  const int64_t n = state.range(0), in = 2048, out = 16384;
  const auto isa = static_cast<CpuIsa>(state.range(1));
  if (!expertmesh::kernels::cpu::CpuSupports(isa)) {
    state.SkipWithError("this CPU lacks the kernel family");
    return;
  }
  auto backend = MakeBackend(isa);
  Tensor w = state.range(2) == 2   ? RandomQ4(out, in, 1)
             : state.range(2) == 1 ? RandomFp8(out, in, 1)
                                   : Random(DType::kBF16, {out, in}, 1);
  Tensor x = Random(DType::kBF16, {n, in}, 2);
  Tensor y = *Tensor::Empty(DType::kBF16, {n, out});
  for (auto _ : state) {
    if (!backend->Linear(x, w, Tensor(), y).ok()) state.SkipWithError("linear failed");
  }
  const double scale_bytes =
      w.block_scales() == nullptr ? 0.0 : static_cast<double>(w.block_scales()->scales->nbytes());
  SetGbps(state, static_cast<double>(w.nbytes()) + scale_bytes);
  SetGflops(state, 2.0 * n * in * out);
}
// One token through an expert's projections (bench-1b: gate / up 384 x 2048, down 2048 x 384)
// and a wide one, bf16 (0) against q4 (2), on the default family: short rows (down_proj's 384)
// pay the per-row costs (group tables, horizontal sums) over fewer weights. Args: in, out, dtype.
void BM_LinearQ4Shapes(benchmark::State& state) {
  const int64_t in = state.range(0), out = state.range(1);
  auto backend = MakeBackend(expertmesh::kernels::cpu::BestCpuIsa());
  Tensor w = state.range(2) == 2 ? RandomQ4(out, in, 1) : Random(DType::kBF16, {out, in}, 1);
  Tensor x = Random(DType::kBF16, {1, in}, 2);
  Tensor y = *Tensor::Empty(DType::kBF16, {1, out});
  for (auto _ : state) {
    if (!backend->Linear(x, w, Tensor(), y).ok()) state.SkipWithError("linear failed");
  }
  state.counters["Gweights/s"] = benchmark::Counter(1e-9 * static_cast<double>(in * out),
                                                    benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_LinearQ4Shapes)
    ->ArgsProduct({{384, 2048}, {384, 2048}, {0, 2}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

BENCHMARK(BM_LinearQ4Families)
    ->ArgsProduct({{1, 2, 3, 4, 8, 16, 32, 256},
                   {static_cast<int>(CpuIsa::kAvx2), static_cast<int>(CpuIsa::kAvx512Bf16),
                    static_cast<int>(CpuIsa::kAmx)},
                   {0, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Prefill-sized linear: args tokens, blas_min_tokens (0 = streaming kernel only).
void BM_LinearPrefill(benchmark::State& state) {
  const int64_t n = state.range(0), in = 2048, out = 2048;
  auto backend = MakeBackend(CpuIsa::kAvx2, state.range(1));
  Tensor w = Random(DType::kBF16, {out, in}, 1);
  Tensor x = Random(DType::kF32, {n, in}, 2);
  Tensor y = *Tensor::Empty(DType::kF32, {n, out});
  for (auto _ : state) {
    if (!backend->Linear(x, w, Tensor(), y).ok()) state.SkipWithError("linear failed");
  }
  SetGflops(state, 2.0 * n * in * out);
}
BENCHMARK(BM_LinearPrefill)
    ->ArgsProduct({{32, 64, 128, 512}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// One Qwen3-MoE-shaped expert layer's gate_up projection: 128 experts of [2*768, 2048] bf16
// (768 MiB... too big for CI; scaled to 64 experts of [2*384, 1024]), top-8, args: tokens.
// Args: tokens, CpuIsa, activations bf16 (1) or f32 (0).
void BM_MoeGroupedLinear(benchmark::State& state) {
  const int64_t n = state.range(0), experts = 64, k = 8, hidden = 1024, inter2 = 768;
  const auto isa = static_cast<CpuIsa>(state.range(1));
  const DType act = state.range(2) != 0 ? DType::kBF16 : DType::kF32;
  if (!expertmesh::kernels::cpu::CpuSupports(isa)) {
    state.SkipWithError("this CPU lacks the kernel family");
    return;
  }
  auto backend = MakeBackend(isa);
  std::vector<Tensor> w;
  for (int e = 0; e < experts; ++e) w.push_back(Random(DType::kBF16, {inter2, hidden}, 10 + e));
  std::mt19937 rng(5);
  Tensor ids = *Tensor::Empty(DType::kI32, {n, k});
  std::vector<int> used(experts, 0);
  for (int64_t t = 0; t < n; ++t) {
    std::vector<int32_t> perm(experts);
    for (int e = 0; e < experts; ++e) perm[e] = e;
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int j = 0; j < k; ++j) {
      ids.data<int32_t>()[t * k + j] = perm[j];
      used[perm[j]] = 1;
    }
  }
  Tensor x = Random(act, {n, hidden}, 3);
  Tensor px = *Tensor::Empty(act, {n * k, hidden});
  Tensor off = *Tensor::Empty(DType::kI32, {experts + 1});
  Tensor slots = *Tensor::Empty(DType::kI32, {n * k});
  Tensor y = *Tensor::Empty(act, {n * k, inter2});
  (void)backend->MoePermute(x, ids, experts, px, off, slots);
  int64_t active = 0;
  for (int u : used) active += u;
  for (auto _ : state) {
    if (!backend->MoeGroupedLinear(px, off, w, y).ok()) state.SkipWithError("grouped failed");
  }
  SetGbps(state, static_cast<double>(active) * inter2 * hidden * 2);
  SetGflops(state, 2.0 * n * k * hidden * inter2);
  state.counters["experts_used"] = static_cast<double>(active);
}
BENCHMARK(BM_MoeGroupedLinear)
    ->ArgsProduct({{1, 8, 32, 256}, {static_cast<int>(CpuIsa::kAvx2)}, {0}})
    ->ArgsProduct({{1, 8, 32, 256, 1024},
                   {static_cast<int>(CpuIsa::kAvx512Bf16), static_cast<int>(CpuIsa::kAmx)},
                   {1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// One decode step's attention inputs: `seqs` sequences of `ctx` cached positions each in 16-slot
// blocks (bf16 cache), one query per sequence with `hq` heads over `hkv` kv heads of dim d.
struct DecodeAttentionInputs {
  Tensor kc, vc, q, query_start, seq_lens, tables, out;
  kernels::PagedAttentionBatch Batch() const { return {query_start, seq_lens, tables}; }
};
DecodeAttentionInputs MakeDecodeAttention(int64_t seqs, int64_t ctx, int64_t hq, int64_t hkv,
                                          DType q_dtype) {
  constexpr int64_t d = 128, bs = 16;
  const int64_t blocks_per_seq = (ctx + bs - 1) / bs, blocks = seqs * blocks_per_seq;
  DecodeAttentionInputs in{Random(DType::kBF16, {blocks, bs, hkv, d}, 1),
                           Random(DType::kBF16, {blocks, bs, hkv, d}, 2),
                           Random(q_dtype, {seqs, hq, d}, 3),
                           *Tensor::Empty(DType::kI32, {seqs + 1}),
                           *Tensor::Empty(DType::kI32, {seqs}),
                           *Tensor::Empty(DType::kI32, {seqs, blocks_per_seq}),
                           *Tensor::Empty(q_dtype, {seqs, hq, d})};
  for (int64_t s = 0; s <= seqs; ++s) in.query_start.data<int32_t>()[s] = static_cast<int32_t>(s);
  for (int64_t s = 0; s < seqs; ++s) in.seq_lens.data<int32_t>()[s] = static_cast<int32_t>(ctx);
  for (int64_t i = 0; i < blocks; ++i) in.tables.data<int32_t>()[i] = static_cast<int32_t>(i);
  return in;
}

// Times one decode step's attention over `in`; `cache_bytes` is what it reads of the cache.
void TimeDecodeAttention(benchmark::State& state, kernels::Backend& backend,
                         DecodeAttentionInputs& in, double cache_bytes) {
  const kernels::PagedAttentionBatch batch = in.Batch();
  for (auto _ : state) {
    if (!backend.PagedAttention(in.q, in.kc, in.vc, batch, 0.088f, in.out).ok()) {
      state.SkipWithError("attn");
    }
  }
  SetGbps(state, cache_bytes);
}

// Decode attention: args batch (sequences), context length; 16 q heads, 4 kv heads, dim 128.
void BM_PagedAttentionDecode(benchmark::State& state) {
  const int64_t seqs = state.range(0), ctx = state.range(1), hkv = 4;
  auto backend = MakeBackend(CpuIsa::kAvx2);
  DecodeAttentionInputs in = MakeDecodeAttention(seqs, ctx, 16, hkv, DType::kF32);
  TimeDecodeAttention(state, *backend, in, 2.0 * seqs * ctx * hkv * 128 * 2);
}
BENCHMARK(BM_PagedAttentionDecode)
    ->Args({1, 1024})
    ->Args({1, 4096})
    ->Args({8, 1024})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Decode attention in bf16 compute (bf16 q and cache, bench-1b's heads) per kernel family: args
// sequences, context length, family. On amx this is the tile kernel with one query per tile.
void BM_PagedAttentionDecodeBf16(benchmark::State& state) {
  const int64_t seqs = state.range(0), ctx = state.range(1), hkv = 4;
  const auto isa = static_cast<CpuIsa>(state.range(2));
  if (!expertmesh::kernels::cpu::CpuSupports(isa)) {
    state.SkipWithError("this CPU lacks the kernel family");
    return;
  }
  auto backend = MakeBackend(isa);
  DecodeAttentionInputs in = MakeDecodeAttention(seqs, ctx, 32, hkv, DType::kBF16);
  TimeDecodeAttention(state, *backend, in, 2.0 * seqs * ctx * hkv * 128 * 2);
}
BENCHMARK(BM_PagedAttentionDecodeBf16)
    ->ArgsProduct({{1, 8},
                   {4096},
                   {static_cast<int>(CpuIsa::kAvx512Bf16), static_cast<int>(CpuIsa::kAmx)}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Prefill attention of one prompt (bench-1b's shape: 32 q heads, 4 kv heads, dim 128, bf16 q and
// cache, 16-token cache blocks): args tokens, kernel family. GFLOP/s counts the causal half only
// (2 products of 2 * d flops per visible query-key pair).
void BM_PagedAttentionPrefill(benchmark::State& state) {
  const int64_t n = state.range(0), hq = 32, hkv = 4, d = 128, bs = 16;
  const auto isa = static_cast<CpuIsa>(state.range(1));
  if (!expertmesh::kernels::cpu::CpuSupports(isa)) {
    state.SkipWithError("this CPU lacks the kernel family");
    return;
  }
  auto backend = MakeBackend(isa);
  const int64_t blocks = (n + bs - 1) / bs;
  Tensor kc = Random(DType::kBF16, {blocks, bs, hkv, d}, 1);
  Tensor vc = Random(DType::kBF16, {blocks, bs, hkv, d}, 2);
  Tensor q = Random(DType::kBF16, {n, hq, d}, 3);
  Tensor qs = *Tensor::Empty(DType::kI32, {2});
  Tensor lens = *Tensor::Empty(DType::kI32, {1});
  Tensor tables = *Tensor::Empty(DType::kI32, {1, blocks});
  qs.data<int32_t>()[0] = 0;
  qs.data<int32_t>()[1] = static_cast<int32_t>(n);
  lens.data<int32_t>()[0] = static_cast<int32_t>(n);
  for (int64_t i = 0; i < blocks; ++i) tables.data<int32_t>()[i] = static_cast<int32_t>(i);
  Tensor out = *Tensor::Empty(DType::kBF16, {n, hq, d});
  kernels::PagedAttentionBatch batch{qs, lens, tables};
  for (auto _ : state) {
    if (!backend->PagedAttention(q, kc, vc, batch, 0.088f, out).ok()) state.SkipWithError("attn");
  }
  SetGflops(state, 4.0 * hq * d * (static_cast<double>(n) * (n + 1) / 2));
}
BENCHMARK(BM_PagedAttentionPrefill)
    ->ArgsProduct({{512, 4096},
                   {static_cast<int>(CpuIsa::kAvx2), static_cast<int>(CpuIsa::kAvx512Bf16),
                    static_cast<int>(CpuIsa::kAmx)}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_RmsNormResidual(benchmark::State& state) {
  const int64_t n = state.range(0), h = 2048;
  auto backend = MakeBackend(CpuIsa::kAvx2);
  Tensor x = Random(DType::kF32, {n, h}, 1), r = Random(DType::kF32, {n, h}, 2);
  Tensor w = Random(DType::kBF16, {h}, 3), out = *Tensor::Empty(DType::kF32, {n, h});
  for (auto _ : state) {
    if (!backend->RmsNorm(x, &r, w, 1e-6f, out).ok()) state.SkipWithError("norm");
  }
  SetGbps(state, 4.0 * n * h * 4);
}
BENCHMARK(BM_RmsNormResidual)->Arg(1)->Arg(512)->UseRealTime();

void BM_MoeTopK(benchmark::State& state) {
  const int64_t n = state.range(0), experts = 128;
  auto backend = MakeBackend(CpuIsa::kAvx2);
  Tensor logits = Random(DType::kF32, {n, experts}, 1);
  Tensor ids = *Tensor::Empty(DType::kI32, {n, 8}), w = *Tensor::Empty(DType::kF32, {n, 8});
  kernels::MoeRoutingParams p{.top_k = 8, .norm_topk_prob = true};
  for (auto _ : state) {
    if (!backend->MoeTopK(logits, Tensor(), p, ids, w).ok()) state.SkipWithError("topk");
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_MoeTopK)->Arg(1)->Arg(256)->UseRealTime();

}  // namespace
}  // namespace expertmesh

BENCHMARK_MAIN();
