// Throughput of the whole engine (scheduler + forward + sampling) on a make-model Qwen3-MoE
// checkpoint: decode at batch 1, 8 and 32 and prefill, beside the memory-bandwidth roofline of
// batch 1: bytes of weights one decode token reads (dense weights, lm_head, top_k experts per
// layer) over the read bandwidth measured in the same run.
//   engine_decode_bench MODEL_DIR[,MODEL_DIR...] [threads] [steps] [batch]
// Several comma-separated models (e.g. one checkpoint in bf16 and in fp8) are measured in the
// same rounds, side by side, and their speeds reported as ratios to the first. A model written
// DIR@FAMILY runs on that CPU kernel family (the EXPERTMESH_CPU_ISA names: avx512bf16, amx, ...),
// so `m@avx512bf16,m@amx` compares two families on one model in one run (each loads its copy).
// With `batch`, only decode at that batch size is run (for profilers: no bandwidth passes, no
// other batch sizes in the profile).
//
// On a shared host both the bandwidth and the decode speed drift by tens of percent within
// seconds, so the measurements are interleaved: kRounds rounds of (read bandwidth, batch 1,
// batch 8, batch 32), each batch timed over steps / kRounds steps. Batch 1's fraction of the
// roofline is taken per round, against the bandwidth measured just before it, and the median
// round is reported; the batch ratios come from the totals of the same rounds.
#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/util/cpu_engine.h"
#include "worker/engine/engine.h"

namespace {

using Clock = std::chrono::steady_clock;

// Sum of n words with 256-bit loads and eight independent accumulators, so the loop is bound by
// memory, not by the adds (a scalar loop can fall short of what the GEMMs' vector loads reach),
// and a software prefetch 4 KiB ahead as the GEMMs do (measured: 2-9% above the hardware
// prefetcher alone; without it the GEMMs outran their own "roof").
__attribute__((target("avx2"))) uint64_t SumAvx2(const uint64_t* p, size_t n) {
  constexpr size_t kPrefetchWords = 4096 / sizeof(uint64_t);
  __m256i acc[8];
  for (__m256i& a : acc) a = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    // 32 words are four cache lines; prefetching past the end is harmless (it never faults).
    for (int line = 0; line < 4; ++line) {
      _mm_prefetch(reinterpret_cast<const char*>(p + i + kPrefetchWords + 8 * line), _MM_HINT_T0);
    }
    for (int j = 0; j < 8; ++j) {
      acc[j] = _mm256_add_epi64(acc[j],
                                _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 4 * j)));
    }
  }
  for (int j = 1; j < 8; ++j) acc[0] = _mm256_add_epi64(acc[0], acc[j]);
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc[0]);
  uint64_t s = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  for (; i < n; ++i) s += p[i];
  return s;
}

uint64_t SumScalar(const uint64_t* p, size_t n) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += p[i];
    s1 += p[i + 1];
    s2 += p[i + 2];
    s3 += p[i + 3];
  }
  for (; i < n; ++i) s0 += p[i];
  return s0 + s1 + s2 + s3;
}

// Read bandwidth (bytes/s): sums a 1 GiB buffer with `threads` threads, best of `passes`.
class ReadBandwidthProbe {
 public:
  explicit ReadBandwidthProbe(int threads)
      // Aligned to 2 MiB and in transparent huge pages where the kernel has them, as the CPU
      // backend keeps its weights (weight_arena.h): the roof is the best this memory can do.
      : threads_(threads),
        buf_(static_cast<uint64_t*>(std::aligned_alloc(2 << 20, kWords * sizeof(uint64_t))),
             &std::free) {
    (void)madvise(buf_.get(), kWords * sizeof(uint64_t), MADV_HUGEPAGE);
    std::fill_n(buf_.get(), kWords, 1);
  }

  double Measure(int passes) const {
    const bool avx2 = __builtin_cpu_supports("avx2");
    double best = 0;
    for (int rep = 0; rep < passes; ++rep) {
      std::vector<uint64_t> sums(threads_);
      const auto t0 = Clock::now();
      std::vector<std::thread> pool;
      for (int t = 0; t < threads_; ++t) {
        pool.emplace_back([&, t] {
          const size_t begin = kWords * t / threads_ / 32 * 32;
          const size_t end = kWords * (t + 1) / threads_ / 32 * 32;
          const uint64_t* p = buf_.get() + begin;
          sums[t] = avx2 ? SumAvx2(p, end - begin) : SumScalar(p, end - begin);
        });
      }
      for (auto& th : pool) th.join();
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      if (sums[0] == 42) std::puts("");  // keep the loads
      best = std::max(best, kWords * sizeof(uint64_t) / s);
    }
    return best;
  }

 private:
  static constexpr size_t kWords = (size_t{1} << 30) / sizeof(uint64_t);
  int threads_;
  std::unique_ptr<uint64_t, decltype(&std::free)> buf_;
};

constexpr int kRounds = 4;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct Timed {
  int64_t tokens = 0;
  double seconds = 0;
  double rate() const { return seconds > 0 ? tokens / seconds : 0; }
  Timed& operator+=(const Timed& other) {
    tokens += other.tokens;
    seconds += other.seconds;
    return *this;
  }
};

// Decode steps with `batch` requests already past their prefill (which is not timed).
Timed TimeDecode(expertmesh::engine::Engine& e, int batch, int steps) {
  const int64_t vocab = e.config().vocab_size;
  static int round = 0;
  ++round;
  for (int r = 0; r < batch; ++r) {
    expertmesh::scheduler::GenerationRequest req;
    req.id = std::to_string(round) + "-" + std::to_string(r);
    for (int i = 0; i < 16; ++i) req.prompt.push_back((i * 37 + r * 101 + round * 7) % vocab);
    req.sampling.temperature = 0;
    req.max_tokens = steps + 2;
    req.ignore_eos = true;
    if (!e.AddRequest(req).ok()) std::abort();
  }
  // Prefill (and the first token) outside the timed loop.
  if (!e.Step().ok()) std::abort();
  int64_t tokens = 0;
  const auto t0 = Clock::now();
  for (int s = 0; s < steps; ++s) {
    auto out = e.Step();
    if (!out.ok()) std::abort();
    tokens += static_cast<int64_t>(out->size());
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  while (e.HasWork()) (void)e.Step();
  return {tokens, secs};
}

// Prompt tokens per second: `prompts` prompts of `len` tokens prefilled (chunked by the
// scheduler's token budget) until each has its first token.
double PrefillTokensPerSecond(expertmesh::engine::Engine& e, int prompts, int len) {
  const int64_t vocab = e.config().vocab_size;
  for (int r = 0; r < prompts; ++r) {
    expertmesh::scheduler::GenerationRequest req;
    req.id = "prefill-" + std::to_string(r);
    for (int i = 0; i < len; ++i) req.prompt.push_back((i * 53 + r * 211 + 3) % vocab);
    req.sampling.temperature = 0;
    req.max_tokens = 1;
    req.ignore_eos = true;
    if (!e.AddRequest(req).ok()) std::abort();
  }
  const auto t0 = Clock::now();
  while (e.HasWork()) {
    if (!e.Step().ok()) std::abort();
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  return static_cast<double>(prompts) * len / secs;
}

// One model under test and what its rounds measured.
struct Subject {
  std::string dir;
  std::unique_ptr<expertmesh::engine::Engine> engine;
  double active = 0;  // weight bytes one decode token reads
  Timed b1, b8, b32;
  std::vector<double> fractions;
  double prefill = 0;  // total over the prefill passes
  std::vector<double> prefill_passes;
};

// DIR or DIR@FAMILY: the engine over DIR on a CPU backend of that kernel family (or the one
// EXPERTMESH_CPU_ISA / the CPU picks).
absl::StatusOr<std::unique_ptr<expertmesh::engine::Engine>> LoadSubject(
    const std::string& spec, const expertmesh::engine::EngineOptions& options, int threads) {
  using expertmesh::kernels::cpu::CpuIsa;
  const size_t at = spec.find('@');
  if (at == std::string::npos) return expertmesh::testing::LoadCpuEngine(spec, options, threads);
  const std::string family = spec.substr(at + 1);
  expertmesh::kernels::cpu::CpuBackendOptions backend_options{.num_threads = threads};
  for (CpuIsa isa :
       {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Bf16, CpuIsa::kAmx}) {
    if (expertmesh::kernels::cpu::CpuIsaName(isa) == family) backend_options.isa = isa;
  }
  if (!backend_options.isa.has_value()) {
    return absl::InvalidArgumentError("unknown kernel family " + family);
  }
  auto backend = expertmesh::kernels::cpu::CpuBackend::Create(backend_options);
  if (!backend.ok()) return backend.status();
  return expertmesh::engine::Engine::Load(spec.substr(0, at), *std::move(backend), options);
}

std::vector<std::string> SplitDirs(const std::string& arg) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= arg.size()) {
    const size_t comma = arg.find(',', start);
    out.push_back(
        arg.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL_DIR[,MODEL_DIR...] [threads] [steps] [batch]\n", argv[0]);
    return 2;
  }
  const int threads = argc > 2 ? std::atoi(argv[2]) : 2;
  const int steps = argc > 3 ? std::atoi(argv[3]) : 64;
  expertmesh::engine::EngineOptions o;
  o.compute_dtype = expertmesh::DType::kBF16;
  o.max_model_len = 1024;
  std::vector<Subject> subjects;
  for (const std::string& dir : SplitDirs(argv[1])) {
    auto e = LoadSubject(dir, o, threads);
    if (!e.ok()) {
      std::fprintf(stderr, "%s: %s\n", dir.c_str(), e.status().ToString().c_str());
      return 1;
    }
    Subject s;
    s.dir = dir;
    s.engine = *std::move(e);
    s.active = static_cast<double>(s.engine->model().active_weight_bytes_per_token());
    subjects.push_back(std::move(s));
  }
  if (argc > 4) {
    const int batch = std::atoi(argv[4]);
    for (Subject& s : subjects) {
      TimeDecode(*s.engine, batch, 4);  // warm-up: page in the weights
      std::printf("%s: decode batch %d: %.1f tok/s\n", s.dir.c_str(), batch,
                  TimeDecode(*s.engine, batch, steps).rate());
    }
    return 0;
  }
  const ReadBandwidthProbe probe(threads);
  for (Subject& s : subjects) TimeDecode(*s.engine, 1, 4);  // warm-up: page in the weights
  const int round_steps = std::max(1, steps / kRounds);
  std::vector<double> bandwidths;
  // Every round measures the bandwidth, then each model in turn: models compared side by side
  // see the same drift.
  for (int round = 0; round < kRounds; ++round) {
    const double bw = probe.Measure(3);
    bandwidths.push_back(bw);
    for (Subject& s : subjects) {
      const Timed r1 = TimeDecode(*s.engine, 1, round_steps);
      s.fractions.push_back(r1.rate() * s.active / bw);
      std::printf(
          "round %d: read bandwidth %.1f GB/s, %s batch 1 %.1f tok/s (%.0f%% of its "
          "roofline)\n",
          round + 1, bw / 1e9, s.dir.c_str(), r1.rate(), 100 * s.fractions.back());
      s.b1 += r1;
      s.b8 += TimeDecode(*s.engine, 8, round_steps);
      s.b32 += TimeDecode(*s.engine, 32, round_steps);
    }
  }
  // Prefill in alternating passes (A B A B), so that subjects compared see the same drift.
  constexpr int kPrefillPasses = 2;
  for (int pass = 0; pass < kPrefillPasses; ++pass) {
    for (Subject& s : subjects) {
      s.prefill_passes.push_back(PrefillTokensPerSecond(*s.engine, 8, 256));
      std::printf("prefill pass %d: %s %.1f tok/s\n", pass + 1, s.dir.c_str(),
                  s.prefill_passes.back());
    }
  }
  for (Subject& s : subjects) {
    // The rate over all passes: tokens over total time.
    double secs = 0;
    for (double rate : s.prefill_passes) secs += 8.0 * 256 / rate;
    s.prefill = kPrefillPasses * 8.0 * 256 / secs;
  }
  const double bw = Median(bandwidths);
  std::printf(
      "read bandwidth %.1f GB/s (%d threads, median of %d rounds, each the best of 3 "
      "passes)\n",
      bw / 1e9, threads, kRounds);
  for (const Subject& s : subjects) {
    std::printf("== %s (backend %s)\n", s.dir.c_str(),
                std::string(s.engine->backend().Name()).c_str());
    std::printf("weights %.1f MB, active per token %.1f MB\n",
                s.engine->model().weight_bytes() / 1e6, s.active / 1e6);
    std::printf(
        "batch 1 roofline %.1f tok/s; decode batch 1: %.1f tok/s (%.0f%% of roofline, median "
        "round; %.1f GB/s of weights)\n",
        bw / s.active, s.b1.rate(), 100 * Median(s.fractions), s.b1.rate() * s.active / 1e9);
    std::printf("decode batch 8: %.1f tok/s (%.1fx batch 1)\n", s.b8.rate(),
                s.b8.rate() / s.b1.rate());
    std::printf("decode batch 32: %.1f tok/s (%.1fx batch 1)\n", s.b32.rate(),
                s.b32.rate() / s.b1.rate());
    std::printf("prefill (8 prompts x 256 tokens): %.1f tok/s\n", s.prefill);
  }
  for (size_t i = 1; i < subjects.size(); ++i) {
    const Subject &a = subjects[i], &b = subjects[0];
    std::printf("%s vs %s: batch 1 %.2fx, batch 8 %.2fx, batch 32 %.2fx, prefill %.2fx\n",
                a.dir.c_str(), b.dir.c_str(), a.b1.rate() / b.b1.rate(), a.b8.rate() / b.b8.rate(),
                a.b32.rate() / b.b32.rate(), a.prefill / b.prefill);
  }
  return 0;
}
