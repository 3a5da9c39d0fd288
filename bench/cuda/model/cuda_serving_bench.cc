// Serving benchmark of the engine on one GPU (worker/engine on kernels/cuda/backend): requests
// arrive on the schedules tools/gpu/schedule.py writes (Poisson arrivals at a request rate, or
// all at once), the engine runs continuous batching, and per schedule it prints one line of
// output throughput, TTFT and TPOT. tools/gpu/hf_bench.py measures the same quantities for
// PyTorch/transformers on the same checkpoint, prompts and schedules.
//
// Definitions (shared with hf_bench.py):
//   TTFT  = time of a request's first output token - its arrival time;
//   TPOT  = (time of its last token - time of its first) / (output tokens - 1);
//   output_tok_s = all output tokens / (last token of the run - first arrival).
// Prompts: `prompt_len` tokens of PromptToken(request index, position); greedy decoding of
// exactly `output_len` tokens (eos ignored); prefix caching off, as transformers has none.
//
//   cuda_serving_bench MODEL_DIR PROMPT_LEN OUTPUT_LEN SCHEDULE_FILE...
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/cuda/model/model_bench_util.h"
#include "common/status_macros.h"
#include "kernels/cuda/backend/cuda_backend.h"
#include "worker/engine/engine.h"

namespace expertmesh::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Schedule {
  std::string name;             // the header's "rate=..." text
  std::vector<double> arrival;  // seconds from the start, non-decreasing
};

// "# <description>" then one arrival time in seconds per line.
absl::StatusOr<Schedule> ReadSchedule(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open schedule ", path));
  Schedule s;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line[0] == '#') {
      const size_t text = line.find_first_not_of("# ");
      if (text != std::string::npos) s.name = line.substr(text);
      continue;
    }
    s.arrival.push_back(std::strtod(line.c_str(), nullptr));
    if (s.arrival.size() > 1 && s.arrival.back() < s.arrival[s.arrival.size() - 2]) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": arrival times decrease"));
    }
  }
  if (s.arrival.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no requests"));
  return s;
}

struct Flags {
  std::string model_dir;
  int prompt_len = 0, output_len = 0;
  std::vector<std::string> schedules;
};

class ServingBench {
 public:
  static absl::StatusOr<std::unique_ptr<ServingBench>> Create(const Flags& f) {
    auto b = std::unique_ptr<ServingBench>(new ServingBench(f));
    ASSIGN_OR_RETURN(std::unique_ptr<kernels::Backend> backend, cuda::CreateCudaBackend({}));
    models::ModelOptions mo;
    mo.compute_dtype = DType::kBF16;
    mo.max_positions = f.prompt_len + f.output_len + 16;
    ASSIGN_OR_RETURN(std::unique_ptr<models::Model> model,
                     models::LoadModel(f.model_dir, backend.get(), mo));
    engine::EngineOptions o;
    o.compute_dtype = DType::kBF16;
    o.enable_prefix_caching = false;
    o.max_num_seqs = 64;
    o.max_num_batched_tokens = 2048;
    o.max_model_len = mo.max_positions;
    // Room for every running sequence at full length, plus a quarter.
    o.kv_cache_bytes = model->kv_cache_spec().BytesPerToken() * o.max_num_seqs *
                       static_cast<uint64_t>(o.max_model_len) * 5 / 4;
    ASSIGN_OR_RETURN(b->engine_, engine::Engine::Create(std::move(backend), std::move(model), o));
    return b;
  }

  // Before any timing: every decode graph bucket a schedule can reach (1 to 64 sequences, in
  // powers of two) runs its eager first step and its recording, cuBLASLt picks its plans and
  // the pools grow. Four output tokens: a prefill step and three decode steps per round.
  absl::Status WarmUp() {
    for (int n = 1; n <= 64; n *= 2) {
      RETURN_IF_ERROR(RunSchedule({"warm-up", std::vector<double>(n, 0.0)}, 4, /*print=*/false));
    }
    return absl::OkStatus();
  }

  absl::Status RunSchedule(const Schedule& s, int output_len, bool print) {
    const int n = static_cast<int>(s.arrival.size());
    const int64_t vocab = engine_->config().vocab_size;
    std::vector<double> first(n, -1), last(n, -1);
    std::vector<int> produced(n, 0);
    std::map<std::string, int> index;
    const std::string tag = absl::StrCat(run_++, "-");
    int next = 0, done = 0;
    int64_t tokens = 0;
    const auto t0 = Clock::now();
    auto now = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
    while (done < n) {
      for (; next < n && s.arrival[next] <= now(); ++next) {
        scheduler::GenerationRequest r;
        r.id = tag + std::to_string(next);
        for (int i = 0; i < flags_.prompt_len; ++i) r.prompt.push_back(PromptToken(next, i, vocab));
        r.sampling.temperature = 0;
        r.max_tokens = output_len;
        r.ignore_eos = true;
        RETURN_IF_ERROR(engine_->AddRequest(r));
        index[r.id] = next;
      }
      if (!engine_->HasWork()) {
        if (next >= n) return absl::InternalError("engine idle with requests unfinished");
        // Idle until the next arrival.
        std::this_thread::sleep_for(std::chrono::duration<double>(s.arrival[next] - now()));
        continue;
      }
      ASSIGN_OR_RETURN(std::vector<engine::RequestOutput> outs, engine_->Step());
      const double t = now();
      for (const engine::RequestOutput& o : outs) {
        const int i = index.at(o.id);
        if (first[i] < 0) first[i] = t;
        last[i] = t;
        ++produced[i];
        ++tokens;
        if (o.finish != scheduler::FinishReason::kNone) ++done;
      }
    }
    if (!print) return absl::OkStatus();
    std::vector<double> ttft, tpot;
    double end = 0;
    for (int i = 0; i < n; ++i) {
      if (produced[i] != output_len) {
        return absl::InternalError(absl::StrCat("request ", i, " produced ", produced[i],
                                                " tokens, expected ", output_len));
      }
      ttft.push_back((first[i] - s.arrival[i]) * 1e3);
      if (produced[i] > 1) tpot.push_back((last[i] - first[i]) * 1e3 / (produced[i] - 1));
      end = std::max(end, last[i]);
    }
    const double span = end - s.arrival.front();
    std::printf(
        "serving engine=expertmesh_cuda schedule=\"%s\" requests=%d prompt_len=%d output_len=%d "
        "duration_s=%.2f output_tok_s=%.1f req_s=%.2f ttft_ms_mean=%.1f ttft_ms_p50=%.1f "
        "ttft_ms_p99=%.1f tpot_ms_mean=%.2f tpot_ms_p50=%.2f tpot_ms_p99=%.2f\n",
        s.name.c_str(), n, flags_.prompt_len, output_len, span, static_cast<double>(tokens) / span,
        n / span, Mean(ttft), Quantile(ttft, 0.5), Quantile(ttft, 0.99), Mean(tpot),
        Quantile(tpot, 0.5), Quantile(tpot, 0.99));
    std::fflush(stdout);
    return absl::OkStatus();
  }

 private:
  explicit ServingBench(const Flags& f) : flags_(f) {}
  Flags flags_;
  std::unique_ptr<engine::Engine> engine_;
  int run_ = 0;
};

absl::Status Run(const Flags& f) {
  std::vector<Schedule> schedules;
  for (const std::string& path : f.schedules) {
    ASSIGN_OR_RETURN(Schedule s, ReadSchedule(path));
    schedules.push_back(std::move(s));
  }
  const auto t0 = Clock::now();
  ASSIGN_OR_RETURN(std::unique_ptr<ServingBench> bench, ServingBench::Create(f));
  std::printf("serving_load model=%s load_s=%.1f\n", f.model_dir.c_str(),
              std::chrono::duration<double>(Clock::now() - t0).count());
  RETURN_IF_ERROR(bench->WarmUp());
  for (const Schedule& s : schedules) {
    RETURN_IF_ERROR(bench->RunSchedule(s, f.output_len, /*print=*/true));
  }
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  // Line-buffered: a run cut off by a timeout keeps every line it printed.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (argc < 5) {
    std::fprintf(stderr,
                 "usage: %s MODEL_DIR PROMPT_LEN OUTPUT_LEN SCHEDULE_FILE...\n"
                 "  (schedules: tools/gpu/schedule.py)\n",
                 argv[0]);
    return 2;
  }
  Flags f;
  f.model_dir = argv[1];
  f.prompt_len = std::atoi(argv[2]);
  f.output_len = std::atoi(argv[3]);
  for (int i = 4; i < argc; ++i) f.schedules.push_back(argv[i]);
  if (f.prompt_len < 1 || f.output_len < 2) {
    std::fprintf(stderr, "PROMPT_LEN must be >= 1 and OUTPUT_LEN >= 2\n");
    return 2;
  }
  if (!cuda::CudaDeviceAvailable()) {
    std::printf("cuda_serving_bench: no CUDA GPU on this machine; nothing measured\n");
    return 0;
  }
  if (absl::Status s = Run(f); !s.ok()) {
    std::fprintf(stderr, "cuda_serving_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace expertmesh::bench

int main(int argc, char** argv) { return expertmesh::bench::Main(argc, argv); }
