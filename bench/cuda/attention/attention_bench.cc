// GPU benchmark of kernels/cuda/attention, one line per case (never asserts on timings):
//  (a) prefill: causal attention over the paged cache at 8 x 4096 tokens, 32 q heads, 8 kv
//      heads, d 128, bf16, as TFLOP/s (2 * 2 * q * k * d / 2 per head, causal) and as a fraction
//      of the dense bf16 tensor-core peak, read from the device (SMs x clock x 4096 FLOP/clk/SM
//      on sm_90) and of H100-SXM's nominal 990 TFLOP/s;
//  (b) decode: bytes of K/V read / time against the cudaMemcpy device-to-device bandwidth
//      (bytes read + written) measured in the same run, for GQA and MLA (576-wide latent,
//      k_cache == v_cache) caches.
// Times are cudaEvent medians after warm-up; caches are far larger than L2.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <random>
#include <vector>

#include "bench/cuda/attention/attention_fill.h"
#include "bench/cuda/bench_util.h"
#include "kernels/cuda/attention/paged_attention.h"

namespace expertmesh::cuda {
namespace {

void* DeviceAlloc(size_t bytes) { return bench::DeviceAlloc(std::max<size_t>(bytes, 16)); }

using bench::MedianMs;

struct Case {
  const char* name;
  int num_seqs;
  int q_len;    // per sequence
  int seq_len;  // per sequence (context after this step)
  int q_heads;
  int kv_heads;
  int k_dim;
  int v_dim;
  bool kv_same;
  PagedAttentionPath path;
};

struct Timing {
  float ms;
  int64_t kv_bytes;  // distinct K/V bytes the step must read
  double flops;      // causal: 2 * 2 * q * k * d / 2 per head for prefill
};

Timing RunCase(const Case& c, cudaStream_t stream) {
  constexpr int kBlock = 16;
  const int64_t blocks_per_seq = (c.seq_len + kBlock - 1) / kBlock;
  const int64_t num_blocks = blocks_per_seq * c.num_seqs;
  const int64_t n = static_cast<int64_t>(c.num_seqs) * c.q_len;
  const int64_t k_elems = num_blocks * kBlock * c.kv_heads * c.k_dim;
  const int64_t v_elems = c.kv_same ? 0 : num_blocks * kBlock * c.kv_heads * c.v_dim;
  const int64_t q_elems = n * c.q_heads * c.k_dim;
  auto* q = static_cast<uint16_t*>(DeviceAlloc(q_elems * 2));
  auto* k = static_cast<uint16_t*>(DeviceAlloc(k_elems * 2));
  auto* v = c.kv_same ? k : static_cast<uint16_t*>(DeviceAlloc(v_elems * 2));
  void* out = DeviceAlloc(n * c.q_heads * c.v_dim * 2);
  BENCH_CHECK(FillRandomBf16(q, q_elems, 1, 1.0f, stream));
  BENCH_CHECK(FillRandomBf16(k, k_elems, 2, 1.0f, stream));
  if (!c.kv_same) BENCH_CHECK(FillRandomBf16(v, v_elems, 3, 1.0f, stream));

  // Batch layout; blocks handed out in a shuffled order, as a real pool would after a while.
  std::vector<int32_t> qs(c.num_seqs + 1), lens(c.num_seqs, c.seq_len), table(num_blocks);
  for (int s = 0; s <= c.num_seqs; ++s) qs[s] = s * c.q_len;
  std::iota(table.begin(), table.end(), 0);
  std::mt19937 rng(5);
  std::shuffle(table.begin(), table.end(), rng);
  auto* d_qs = static_cast<int32_t*>(DeviceAlloc(qs.size() * 4));
  auto* d_lens = static_cast<int32_t*>(DeviceAlloc(lens.size() * 4));
  auto* d_table = static_cast<int32_t*>(DeviceAlloc(table.size() * 4));
  auto* d_flags = static_cast<uint32_t*>(DeviceAlloc(4));
  BENCH_CHECK(cudaMemcpy(d_qs, qs.data(), qs.size() * 4, cudaMemcpyHostToDevice));
  BENCH_CHECK(cudaMemcpy(d_lens, lens.data(), lens.size() * 4, cudaMemcpyHostToDevice));
  BENCH_CHECK(cudaMemcpy(d_table, table.data(), table.size() * 4, cudaMemcpyHostToDevice));
  BENCH_CHECK(cudaMemset(d_flags, 0, 4));

  PagedAttentionArgs args;
  args.q = q;
  args.q_dtype = DType::kBF16;
  args.k_cache = k;
  args.v_cache = v;
  args.cache_dtype = DType::kBF16;
  args.query_start = d_qs;
  args.seq_lens = d_lens;
  args.block_tables = d_table;
  args.out = out;
  args.num_tokens = n;
  args.num_seqs = c.num_seqs;
  args.q_heads = c.q_heads;
  args.kv_heads = c.kv_heads;
  args.k_dim = c.k_dim;
  args.v_dim = c.v_dim;
  args.num_blocks = num_blocks;
  args.block_size = kBlock;
  args.max_blocks_per_seq = blocks_per_seq;
  args.scale = 0.08f;
  args.error_flags = d_flags;
  args.path = c.path;
  args.workspace_bytes = PagedAttentionWorkspaceBytes(args);
  args.workspace = DeviceAlloc(args.workspace_bytes);

  const float ms =
      MedianMs(stream, 3, 15, [&] { BENCH_CHECK(LaunchPagedAttention(args, stream)); });
  uint32_t flags = 0;
  BENCH_CHECK(cudaMemcpy(&flags, d_flags, 4, cudaMemcpyDeviceToHost));
  if (flags != 0) std::fprintf(stderr, "%s: error flags 0x%x\n", c.name, flags);

  Timing t;
  t.ms = ms;
  t.kv_bytes = static_cast<int64_t>(c.num_seqs) * c.seq_len * c.kv_heads *
               (c.k_dim + (c.kv_same ? 0 : c.v_dim)) * 2;
  t.flops =
      2.0 * 2.0 * c.q_len * static_cast<double>(c.seq_len) * c.k_dim / 2.0 * c.q_heads * c.num_seqs;
  for (void* p : {static_cast<void*>(q), static_cast<void*>(k), out, static_cast<void*>(d_qs),
                  static_cast<void*>(d_lens), static_cast<void*>(d_table),
                  static_cast<void*>(d_flags), args.workspace}) {
    BENCH_CHECK(cudaFree(p));
  }
  if (!c.kv_same) BENCH_CHECK(cudaFree(v));
  return t;
}

// Device-to-device copy bandwidth, bytes read + written per second.
double CopyBandwidth(cudaStream_t stream) {
  const size_t bytes = size_t{1} << 30;
  void* a = DeviceAlloc(bytes);
  void* b = DeviceAlloc(bytes);
  BENCH_CHECK(cudaMemset(a, 1, bytes));
  const float ms = MedianMs(stream, 2, 10, [&] {
    BENCH_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, stream));
  });
  BENCH_CHECK(cudaFree(a));
  BENCH_CHECK(cudaFree(b));
  return 2.0 * bytes / (ms * 1e-3);
}

int Main() {
  int device = 0, sms = 0, clock_khz = 0, major = 0;
  BENCH_CHECK(cudaGetDevice(&device));
  BENCH_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  BENCH_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, device));
  BENCH_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  cudaStream_t stream;
  BENCH_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  // sm_90 dense bf16 mma: 4096 FLOP per clock per SM (1024 FMA x 2 x 2 per tensor-core quad).
  const double peak = static_cast<double>(sms) * clock_khz * 1e3 * 4096.0;
  const double copy_bw = CopyBandwidth(stream);
  std::printf(
      "device: %d SMs, %.0f MHz, sm_%d0; dense bf16 peak %.0f TFLOP/s (H100-SXM nominal "
      "990); D2D copy %.0f GB/s (read + write)\n",
      sms, clock_khz / 1e3, major, peak / 1e12, copy_bw / 1e9);

  using P = PagedAttentionPath;
  const Case prefill[] = {
      {"prefill 8x4096 q32 kv8 d128 tensor_core", 8, 4096, 4096, 32, 8, 128, 128, false,
       P::kTensorCore},
      {"prefill 8x4096 q32 kv8 d128 auto", 8, 4096, 4096, 32, 8, 128, 128, false, P::kAuto},
      {"chunked prefill 8x512 of 4096 q32 kv8 d128", 8, 512, 4096, 32, 8, 128, 128, false,
       P::kAuto},
      {"prefill 4x2048 q16 kv16 dk192 dv128", 4, 2048, 2048, 16, 16, 192, 128, false, P::kAuto},
      {"prefill 2x1024 q32 kv8 d128 split_k (CUDA cores)", 2, 1024, 1024, 32, 8, 128, 128, false,
       P::kSplitK},
  };
  for (const Case& c : prefill) {
    const Timing t = RunCase(c, stream);
    // Chunked prefill: only the causal part of each chunk's rows is computed; count it exactly.
    double flops = t.flops;
    if (c.q_len != c.seq_len) {
      const double visible =
          static_cast<double>(c.seq_len - c.q_len) * c.q_len + c.q_len * (c.q_len + 1) / 2.0;
      flops = 2.0 * 2.0 * visible * c.k_dim * c.q_heads * c.num_seqs;
    }
    const double tflops = flops / (t.ms * 1e-3) / 1e12;
    std::printf("%-52s %9.3f ms %7.1f TFLOP/s  %.3f of device peak  %.3f of 990\n", c.name, t.ms,
                tflops, tflops * 1e12 / peak, tflops / 990.0);
  }

  const Case decode[] = {
      {"decode 64x4096 q32 kv8 d128", 64, 1, 4096, 32, 8, 128, 128, false, P::kAuto},
      {"decode 1x32768 q32 kv8 d128 (split-K)", 1, 1, 32768, 32, 8, 128, 128, false, P::kAuto},
      {"decode 256x1024 q32 kv8 d128", 256, 1, 1024, 32, 8, 128, 128, false, P::kAuto},
      {"decode 64x4096 q64 kv8 d128 simple", 64, 1, 4096, 64, 8, 128, 128, false, P::kSimple},
      {"mla decode 32x4096 q16 576 (k == v)", 32, 1, 4096, 16, 1, 576, 576, true, P::kAuto},
      {"mla decode 32x4096 q128 576 (k == v)", 32, 1, 4096, 128, 1, 576, 576, true, P::kAuto},
      {"mla decode 1x32768 q16 576 (split-K)", 1, 1, 32768, 16, 1, 576, 576, true, P::kAuto},
  };
  for (const Case& c : decode) {
    const Timing t = RunCase(c, stream);
    const double bw = t.kv_bytes / (t.ms * 1e-3);
    std::printf("%-52s %9.3f ms %7.0f GB/s of K/V  %.3f of D2D copy\n", c.name, t.ms, bw / 1e9,
                bw / copy_bw);
  }
  BENCH_CHECK(cudaStreamDestroy(stream));
  return 0;
}

}  // namespace
}  // namespace expertmesh::cuda

int main() { return expertmesh::cuda::Main(); }
