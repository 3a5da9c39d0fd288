// GPU benchmark of the whole forward pass (worker/models on kernels/cuda/backend), one line per
// measurement; it never asserts on timings. MODEL_DIR is a Hugging Face checkpoint with random
// bf16 weights: tools/gpu-check.sh writes a Qwen3-30B-A3B-shaped one with `expertmesh make-model`
// (hidden 2048, 32 q / 4 kv heads of 128, 128 experts of width 768, top-8, vocab 151936), with
// the real per-layer shapes but fewer layers than the real 48, to fit the GPU machine's disk and
// time. The bench prints the shape it loaded, so every number says which model it is for.
//
//  (a) decode at batch 1, bf16: bytes of weights one token reads (Model::
//      active_weight_bytes_per_token: every dense weight, the whole lm_head, top_k experts per
//      MoE layer; the KV cache of the context is not counted) over the step time, against the
//      cudaMemcpy device-to-device bandwidth (bytes read + written) measured in the same run:
//      ratio_vs_copy, target 0.70;
//  (b) decode tokens/s at batch 8, 32 and 64, and prefill tokens/s (one step of 1 x 2048 and
//      one of 4 x 512 prompt tokens: 2048, the engine's default token budget per step);
//  (c) every decode batch with CUDA graphs on and off. On is the model's own decode path
//      (ModelOptions::decode_graph_max_batch, worker/models/decode_graph.h): logits to the host,
//      the step replayed as one recorded graph, as the engine runs it. Off is the same model
//      stepped op by op: logits into a backend tensor, then copied to the same host buffer, so
//      both move the same bytes.
// A step is Model::Forward with the logits on the host, timed on the host clock (what a serving
// step waits for); each sequence has `context` tokens in its cache first. The batch-1 ratio is
// printed for both; the graph-on one is the engine's path and the one the target is for.
//
//   cuda_model_bench MODEL_DIR [--steps N] [--context C]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/cuda/model/model_bench_util.h"
#include "common/status_macros.h"
#include "kernels/cuda/backend/cuda_backend.h"
#include "worker/models/forward_batch.h"
#include "worker/models/model.h"

namespace expertmesh::bench {
namespace {

using kernels::Tensor;
using models::SequenceChunk;
using Clock = std::chrono::steady_clock;
constexpr int32_t kBlockSize = 16;

struct Flags {
  std::string model_dir;
  int steps = 32;
  int context = 256;
};

// Sequences of one decode measurement: their token buffers and block tables must outlive the
// chunks that point into them.
struct Batch {
  std::vector<std::vector<int32_t>> tokens, tables;
  std::vector<SequenceChunk> chunks;
};

// `n` sequences, sequence i owning blocks [i * blocks_per_seq, ...), each holding `len` tokens
// at positions [start, start + len).
Batch MakeBatch(int n, int64_t start, int64_t len, int blocks_per_seq, int64_t vocab,
                SequenceChunk::Logits logits, int salt) {
  Batch b;
  b.tokens.resize(n);
  b.tables.resize(n);
  for (int i = 0; i < n; ++i) {
    for (int64_t t = 0; t < len; ++t) {
      b.tokens[i].push_back(PromptToken(i + salt, start + t, vocab));
    }
    for (int k = 0; k < blocks_per_seq; ++k) b.tables[i].push_back(i * blocks_per_seq + k);
  }
  for (int i = 0; i < n; ++i) b.chunks.push_back({b.tokens[i], start, b.tables[i], logits});
  return b;
}

class ModelBench {
 public:
  static absl::StatusOr<std::unique_ptr<ModelBench>> Create(const Flags& flags) {
    auto bench = std::unique_ptr<ModelBench>(new ModelBench(flags));
    ASSIGN_OR_RETURN(bench->backend_, cuda::CreateCudaBackend({}));
    const auto t0 = Clock::now();
    models::ModelOptions mo;
    mo.compute_dtype = DType::kBF16;
    mo.max_positions = 4096;
    ASSIGN_OR_RETURN(bench->model_, models::LoadModel(flags.model_dir, bench->backend_.get(), mo));
    RETURN_IF_ERROR(bench->backend_->Synchronize());
    bench->load_seconds_ = std::chrono::duration<double>(Clock::now() - t0).count();
    // Enough blocks for the largest decode batch and for the 1 x 2048 prefill.
    const int decode_blocks = kMaxBatch * bench->BlocksPerSequence();
    const int prefill_blocks = 2048 / kBlockSize;
    ASSIGN_OR_RETURN(bench->kv_,
                     models::AllocateKvCache(*bench->backend_, bench->model_->kv_cache_spec(),
                                             std::max(decode_blocks, prefill_blocks), kBlockSize));
    return bench;
  }

  absl::Status Run() {
    PrintModel();
    ASSIGN_OR_RETURN(const double copy_bps, CopyBandwidthBytesPerSecond());
    std::printf("copy_bandwidth bytes=%zu read_plus_write_GBps=%.1f\n", size_t{1} << 30,
                copy_bps / 1e9);
    const double active = static_cast<double>(model_->active_weight_bytes_per_token());
    for (int batch : {1, 8, 32, 64}) {
      double ms[2] = {0, 0};  // [0] graphs off, [1] on
      for (int graph : {1, 0}) {
        ASSIGN_OR_RETURN(ms[graph], DecodeStepMs(batch, graph == 1));
        std::printf("%s batch=%d context=%d steps=%d median_step_ms=%.3f tokens_per_s=%.1f",
                    graph ? "decode" : "decode_eager", batch, flags_.context, flags_.steps,
                    ms[graph], batch / (ms[graph] * 1e-3));
        if (batch == 1) {
          const double bps = active / (ms[graph] * 1e-3);
          std::printf(" weight_bytes_per_token=%.0f weights_GBps=%.1f ratio_vs_copy=%.3f", active,
                      bps / 1e9, bps / copy_bps);
          if (graph) std::printf(" target=0.70");
        }
        std::printf("\n");
      }
      std::printf("cuda_graph batch=%d graph_off_ms=%.3f graph_on_ms=%.3f speedup=%.2f\n", batch,
                  ms[0], ms[1], ms[0] / ms[1]);
    }
    for (auto [seqs, len] : {std::pair{1, 2048}, std::pair{4, 512}}) {
      ASSIGN_OR_RETURN(const double ms, PrefillMs(seqs, len));
      std::printf("prefill seqs=%d tokens_per_seq=%d median_ms=%.2f tokens_per_s=%.0f\n", seqs, len,
                  ms, seqs * len / (ms * 1e-3));
    }
    ASSIGN_OR_RETURN(cuda::CudaMemoryStats mem, cuda::GetCudaMemoryStats(*backend_));
    std::printf("memory weight_GB=%.2f pool_in_use_GB=%.2f pool_cached_GB=%.2f cached_graphs=%zu\n",
                mem.weight_bytes / 1e9, mem.pool_in_use_bytes / 1e9, mem.pool_cached_bytes / 1e9,
                mem.cached_graphs);
    return absl::OkStatus();
  }

 private:
  static constexpr int kMaxBatch = 64;

  explicit ModelBench(const Flags& flags) : flags_(flags) {}

  int BlocksPerSequence() const {
    return (flags_.context + flags_.steps + 8 + kBlockSize - 1) / kBlockSize;
  }
  int64_t vocab() const { return model_->config().vocab_size; }

  void PrintModel() const {
    const model::ModelConfig& c = model_->config();
    std::printf(
        "model dir=%s layers=%lld hidden=%lld heads=%lld kv_heads=%lld head_dim=%lld "
        "experts=%lld top_k=%lld moe_intermediate=%lld vocab=%lld weight_GB=%.2f "
        "active_weight_MB_per_token=%.1f load_s=%.1f\n",
        flags_.model_dir.c_str(), static_cast<long long>(c.num_hidden_layers),
        static_cast<long long>(c.hidden_size), static_cast<long long>(c.num_attention_heads),
        static_cast<long long>(c.num_key_value_heads), static_cast<long long>(c.head_dim),
        static_cast<long long>(c.num_experts), static_cast<long long>(c.num_experts_per_tok),
        static_cast<long long>(c.moe_intermediate_size), static_cast<long long>(c.vocab_size),
        model_->weight_bytes() / 1e9, model_->active_weight_bytes_per_token() / 1e6, load_seconds_);
  }

  absl::StatusOr<Tensor> DeviceLogits(int64_t rows) {
    return backend_->Allocate(DType::kF32, {rows, vocab()});
  }

  // Fills the cache of `batch` sequences with `context` tokens (one prefill step).
  // Steps of at most 2048 tokens, as the engine's scheduler makes them.
  absl::Status Prefill(int batch, int salt) {
    Batch b = MakeBatch(batch, 0, flags_.context, BlocksPerSequence(), vocab(),
                        SequenceChunk::Logits::kLast, salt);
    const size_t per_step = std::max<size_t>(1, 2048 / flags_.context);
    for (size_t first = 0; first < b.chunks.size(); first += per_step) {
      const size_t count = std::min(per_step, b.chunks.size() - first);
      ASSIGN_OR_RETURN(
          models::ForwardBatch fb,
          models::MakeForwardBatch(std::span(b.chunks).subspan(first, count), kBlockSize));
      ASSIGN_OR_RETURN(Tensor logits, DeviceLogits(static_cast<int64_t>(count)));
      RETURN_IF_ERROR(model_->Forward(fb, kv_, logits));
    }
    return backend_->Synchronize();
  }

  // Median host time of one decode step at `batch` over flags_.steps steps (after 3 warm-up
  // steps: the graph path runs a bucket's first step op by op and records the second), each
  // step one new token per sequence at the next position, the logits on the host either way.
  absl::StatusOr<double> DecodeStepMs(int batch, bool graph) {
    RETURN_IF_ERROR(Prefill(batch, batch));
    ASSIGN_OR_RETURN(Tensor host_logits, Tensor::Empty(DType::kF32, {batch, vocab()}));
    ASSIGN_OR_RETURN(Tensor device_logits, DeviceLogits(batch));
    std::vector<double> ms;
    for (int s = 0; s < flags_.steps + 3; ++s) {
      Batch b = MakeBatch(batch, flags_.context + s, 1, BlocksPerSequence(), vocab(),
                          SequenceChunk::Logits::kLast, batch);
      ASSIGN_OR_RETURN(models::ForwardBatch fb, models::MakeForwardBatch(b.chunks, kBlockSize));
      const auto t0 = Clock::now();
      if (graph) {
        // Host logits: the model's graph path; they are complete when Forward returns.
        RETURN_IF_ERROR(model_->Forward(fb, kv_, host_logits));
      } else {
        // Backend logits: op by op; the copy waits for the step and moves the same bytes.
        RETURN_IF_ERROR(model_->Forward(fb, kv_, device_logits));
        RETURN_IF_ERROR(backend_->CopyToHost(device_logits, host_logits.raw_data()));
      }
      if (s >= 3) {
        ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
    }
    return Median(ms);
  }

  // Median time of one prefill step of `seqs` prompts of `len` tokens (3 runs after 1 warm-up).
  absl::StatusOr<double> PrefillMs(int seqs, int len) {
    const int blocks = (len + kBlockSize - 1) / kBlockSize;
    Batch b = MakeBatch(seqs, 0, len, blocks, vocab(), SequenceChunk::Logits::kLast, 1000);
    ASSIGN_OR_RETURN(models::ForwardBatch fb, models::MakeForwardBatch(b.chunks, kBlockSize));
    ASSIGN_OR_RETURN(Tensor logits, DeviceLogits(seqs));
    std::vector<double> ms;
    for (int i = 0; i < 4; ++i) {
      const auto t0 = Clock::now();
      RETURN_IF_ERROR(model_->Forward(fb, kv_, logits));
      RETURN_IF_ERROR(backend_->Synchronize());
      if (i > 0) ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    return Median(ms);
  }

  Flags flags_;
  std::unique_ptr<kernels::Backend> backend_;
  std::unique_ptr<models::Model> model_;
  models::KvCacheTensors kv_;
  double load_seconds_ = 0;
};

absl::StatusOr<Flags> ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--steps" || a == "--context") && i + 1 < argc) {
      (a == "--steps" ? f.steps : f.context) = std::atoi(argv[++i]);
    } else if (f.model_dir.empty() && a[0] != '-') {
      f.model_dir = a;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument ", a));
    }
  }
  if (f.model_dir.empty() || f.steps < 1 || f.context < 1) {
    return absl::InvalidArgumentError(
        "usage: cuda_model_bench MODEL_DIR [--steps N] [--context C]");
  }
  return f;
}

int Main(int argc, char** argv) {
  // Line-buffered: a run cut off by a timeout keeps every line it printed.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  absl::StatusOr<Flags> flags = ParseFlags(argc, argv);
  if (!flags.ok()) {
    std::fprintf(stderr, "%s\n", std::string(flags.status().message()).c_str());
    return 2;
  }
  if (!cuda::CudaDeviceAvailable()) {
    std::printf("cuda_model_bench: no CUDA GPU on this machine; nothing measured\n");
    return 0;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
    std::printf("device name=\"%s\" sms=%d\n", prop.name, prop.multiProcessorCount);
  }
  auto bench = ModelBench::Create(*flags);
  absl::Status s = bench.ok() ? (*bench)->Run() : bench.status();
  if (!s.ok()) {
    std::fprintf(stderr, "cuda_model_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace expertmesh::bench

int main(int argc, char** argv) { return expertmesh::bench::Main(argc, argv); }
