// Throughput of the whole engine (scheduler + forward + sampling) on a make-model Qwen3-MoE
// checkpoint: decode at batch 1, 8 and 32 and prefill, beside the memory-bandwidth roofline of
// batch 1: bytes of weights one decode token reads (dense weights, lm_head, top_k experts per
// layer) over the read bandwidth measured in the same run.
//   engine_decode_bench MODEL_DIR[,MODEL_DIR...] [threads] [steps] [batch]
//   engine_decode_bench --prefill-tokens N[,N...] [--rounds R] MODEL_DIR[,...] [threads]
//   engine_decode_bench --grammar json_object|SCHEMA.json|GRAMMAR.gbnf [--rounds R] [--closing]
//                       MODEL_DIR [threads] [steps] [batch]
//   options anywhere: --probe-gib G (read bandwidth probe size, default 4)
// Several comma-separated models (e.g. one checkpoint in bf16 and in fp8) are measured in the
// same rounds, side by side, and their speeds reported as ratios to the first. A model written
// DIR@FAMILY runs on that CPU kernel family (the EXPERTMESH_CPU_ISA names: avx512bf16, amx, ...),
// so `m@avx512bf16,m@amx` compares two families on one model in one run (each loads its copy);
// FAMILY-invariant (e.g. amx-invariant) runs that family batch-invariant (every product on one
// kernel whatever its token count: CpuBackendOptions::batch_invariant). A model written
// DIR+fp8-lm-head (after any @FAMILY) has its lm_head quantized to fp8 at load
// (--quantize-lm-head fp8), so `m,m+fp8-lm-head` measures what that saves.
// Every entry prints the family it runs with. With `batch`, only decode at that batch size is
// run (for profilers: no bandwidth passes, no other batch sizes in the profile).
// With --grammar, decode with and without a grammar on every request (constrained decoding: the
// worker's masks, filled while the forward pass runs, and its budget closing) is timed at batch 1
// and 32 (or `batch`), R rounds (default 3) alternating the two, medians and their ratio
// reported. The grammar is a JSON schema (G1's JsonSchemaToGrammar), any JSON object, or GBNF
// text, compiled against the model directory's tokenizer. Both runs sample at temperature 1 (a
// greedy random model repeats a few tokens, whose experts then stay in the cache: the token mix,
// not the grammar, would set the speed); the constrained one may stop at an end of sequence,
// so each line also says the mean batch its steps
// ran (tokens / steps), and the grammar's own costs per step (engine::GrammarStats). The
// constrained requests have room past the timed steps (and are aborted after them), so their
// budget does not bind while timed: closing an output costs a closing mask per row for the last
// tokens of each request, counted in those stats, not in these rates; --closing gives them only
// their shortest completion plus half the timed steps, to time that regime too.
// With --prefill-tokens, only the prefill of one N-token prompt is timed (time to first token
// and N / that time, the figure `llama-bench -p N` reports), R rounds (default 3) alternating
// the models, medians reported; the prompt is chunked by the engine's default token budget.
//
// On a shared host both the bandwidth and the decode speed drift by tens of percent within
// seconds, so the measurements are interleaved: kRounds rounds of (read bandwidth, batch 1,
// batch 8, batch 32), each batch timed over steps / kRounds steps. Batch 1's fraction of the
// roofline is taken per round, against the bandwidth measured just before it, and the median
// round is reported; the batch ratios come from the totals of the same rounds. Every timed line
// carries the 1-minute load average, the drift's usual cause here.
//
// The roofline is only as good as its probe. A probe whose buffer the last-level cache holds a
// good part of measures the cache, and a CPU with a large LLC (300 MiB on the virtualised Xeon)
// also keeps part of the weights every decode token reads (attention, router, lm_head) between
// tokens, so decode can read "weights" faster than memory delivers them. The probe therefore
// reads a buffer of at least 4 GiB and 4x the LLC (bounded by half the available memory, said
// when it is), and a fraction above 100% is printed with that reason, never bare (the probe:
// read_bandwidth_probe.h).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "bench/engine/read_bandwidth_probe.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_features.h"
#include "model/grammar/engine/grammar_matcher.h"
#include "model/grammar/gbnf.h"
#include "model/grammar/json_schema.h"
#include "tests/util/cpu_engine.h"
#include "worker/engine/engine.h"
#include "worker/grammar/grammar_compiler.h"

namespace {

using expertmesh::bench::LastLevelCacheBytes;
using expertmesh::bench::ReadBandwidthProbe;
using Clock = std::chrono::steady_clock;

// The 1-minute load average, for the record beside each timing.
double LoadAverage() {
  double load = -1;
  std::ifstream("/proc/loadavg") >> load;
  return load;
}

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

// Decode steps with `batch` requests already past their prefill (which is not timed); with
// `grammar`, each request is constrained by it (and ends at an end of sequence), with
// max_tokens `grammar_max_tokens` (0: room past the timed steps).
Timed TimeDecode(expertmesh::engine::Engine& e, int batch, int steps,
                 std::shared_ptr<const expertmesh::grammar::CompiledGrammar> grammar = nullptr,
                 float temperature = 0, int64_t grammar_max_tokens = 0) {
  const int64_t vocab = e.config().vocab_size;
  static int round = 0;
  ++round;
  for (int r = 0; r < batch; ++r) {
    expertmesh::scheduler::GenerationRequest req;
    req.id = std::to_string(round) + "-" + std::to_string(r);
    for (int i = 0; i < 16; ++i) req.prompt.push_back((i * 37 + r * 101 + round * 7) % vocab);
    req.sampling.temperature = temperature;
    req.sampling.seed = static_cast<uint64_t>(r);
    // A constrained request gets room past the timed steps: its budget never binds inside them
    // (a schema's shortest completion can be hundreds of bytes), so the steps time the masks,
    // not the closing of outputs cut short; it is aborted after them.
    req.max_tokens = grammar == nullptr ? steps + 2
                     : grammar_max_tokens > 0
                         ? grammar_max_tokens
                         : std::min<int64_t>(steps + 2 + 512, e.max_model_len() - 16);
    req.ignore_eos = grammar == nullptr;
    req.grammar = grammar;
    if (!e.AddRequest(req).ok()) std::abort();
  }
  // Prefill (and the first token) outside the timed loop.
  if (!e.Step().ok()) std::abort();
  int64_t tokens = 0;
  const auto t0 = Clock::now();
  for (int s = 0; s < steps && e.HasWork(); ++s) {
    auto out = e.Step();
    if (!out.ok()) std::abort();
    tokens += static_cast<int64_t>(out->size());
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  for (int r = 0; r < batch; ++r) (void)e.Abort(std::to_string(round) + "-" + std::to_string(r));
  while (e.HasWork()) (void)e.Step();
  return {tokens, secs};
}

// Prompt tokens per second: `prompts` prompts of `len` tokens prefilled (chunked by the
// scheduler's token budget) until each has its first token. Each call's prompts are new token
// sequences, so a later pass never finds an earlier one's blocks (the engine also runs with
// prefix caching off).
double PrefillTokensPerSecond(expertmesh::engine::Engine& e, int prompts, int len) {
  const int64_t vocab = e.config().vocab_size;
  static int call = 0;
  ++call;
  for (int r = 0; r < prompts; ++r) {
    expertmesh::scheduler::GenerationRequest req;
    req.id = "prefill-" + std::to_string(call) + "-" + std::to_string(r);
    for (int i = 0; i < len; ++i) req.prompt.push_back((i * 53 + r * 211 + call * 17 + 3) % vocab);
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

// Seconds from submitting one `len`-token prompt to its first sampled token (what
// `llama-bench -p len` times, plus one sampling), the request alone in the engine.
double TimeToFirstToken(expertmesh::engine::Engine& e, int len) {
  const int64_t vocab = e.config().vocab_size;
  static int call = 0;
  ++call;
  expertmesh::scheduler::GenerationRequest req;
  req.id = "ttft-" + std::to_string(call);
  for (int i = 0; i < len; ++i) req.prompt.push_back((i * 53 + call * 211 + 5) % vocab);
  req.sampling.temperature = 0;
  req.max_tokens = 1;
  req.ignore_eos = true;
  const auto t0 = Clock::now();
  if (!e.AddRequest(req).ok()) std::abort();
  while (e.HasWork()) {
    if (!e.Step().ok()) std::abort();
  }
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// One model under test and what its rounds measured.
struct Subject {
  std::string dir;
  std::string family;  // the CPU kernel family it runs, and whether it was asked for
  std::unique_ptr<expertmesh::engine::Engine> engine;
  double active = 0;  // weight bytes one decode token reads
  Timed b1, b8, b32;
  std::vector<double> fractions;
  double prefill = 0;  // total over the prefill passes
  std::vector<double> prefill_passes;
  std::vector<std::vector<double>> ttft;  // [prefill length][round] seconds
};

// "amx (asked: @amx)", "amx (EXPERTMESH_CPU_ISA)" or "amx (the best this CPU runs)".
std::string FamilyOf(const std::string& spec, expertmesh::engine::Engine& e) {
  const auto* cpu = dynamic_cast<const expertmesh::kernels::cpu::CpuBackend*>(&e.backend());
  if (cpu == nullptr) return std::string(e.backend().Name());
  std::string name(expertmesh::kernels::cpu::CpuIsaName(cpu->isa()));
  const size_t at = spec.find('@');
  if (at != std::string::npos) return name + " (asked: " + spec.substr(at) + ")";
  const char* env = std::getenv("EXPERTMESH_CPU_ISA");
  if (env != nullptr && *env != '\0') return name + " (EXPERTMESH_CPU_ISA=" + env + ")";
  return name + " (the best this CPU runs)";
}

// DIR or DIR@FAMILY: the engine over DIR on a CPU backend of that kernel family (or the one
// EXPERTMESH_CPU_ISA / the CPU picks).
absl::StatusOr<std::unique_ptr<expertmesh::engine::Engine>> LoadSubject(
    const std::string& spec, const expertmesh::engine::EngineOptions& options, int threads) {
  using expertmesh::kernels::cpu::CpuIsa;
  const size_t at = spec.find('@');
  if (at == std::string::npos) return expertmesh::testing::LoadCpuEngine(spec, options, threads);
  std::string family = spec.substr(at + 1);
  expertmesh::kernels::cpu::CpuBackendOptions backend_options{.num_threads = threads};
  constexpr std::string_view kInvariant = "-invariant";
  if (family.ends_with(kInvariant)) {
    family.resize(family.size() - kInvariant.size());
    backend_options.batch_invariant = true;
  }
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

std::vector<int> ParseInts(const std::string& arg) {
  std::vector<int> out;
  for (const std::string& item : SplitDirs(arg)) {
    const int v = std::atoi(item.c_str());
    if (v <= 0) return {};
    out.push_back(v);
  }
  return out;
}

// The note printed beside any batch-1 fraction above 100%: why the probe is not a limit then.
void PrintAboveProbeReason(const ReadBandwidthProbe& probe, double active_bytes) {
  std::printf(
      "note: above the probe: the probe is not a limit here, for either of two reasons. (1) It "
      "streams %.1f GiB that no cache holds, while of the %.0f MB a decode token reads, the "
      "weights every token reads (attention, router, norms, lm_head) can stay in the %.0f MiB "
      "last-level cache between tokens (%.0f%% of a token's bytes fit in it): part of the "
      "bytes counted come from the cache, not from memory. (2) On a shared host the probe and "
      "the decode after it saw different contention (compare the load and the bandwidth of "
      "the other rounds).\n",
      probe.bytes() / double(1 << 30), active_bytes / 1e6, probe.llc_bytes() / double(1 << 20),
      100 * std::min(1.0, probe.llc_bytes() / active_bytes));
}

// DIR+fp8-lm-head (after any @FAMILY): that model with lm_head quantized to fp8 at load
// (EngineOptions::quantize_lm_head_fp8).
constexpr std::string_view kFp8LmHead = "+fp8-lm-head";

int Usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--prefill-tokens N[,N...] | --grammar json_object|SCHEMA.json|G.gbnf "
               "[--closing]] "
               "[--rounds R] [--probe-gib G] MODEL_DIR[@FAMILY][+fp8-lm-head][,MODEL_DIR...] "
               "[threads] [steps] "
               "[batch]\n",
               argv0);
  return 2;
}

// GBNF text of --grammar's argument: any JSON object, a JSON schema file, or a GBNF file.
absl::StatusOr<std::string> GrammarText(const std::string& spec) {
  namespace grammar = expertmesh::grammar;
  if (spec == "json_object") return grammar::PrintGbnf(grammar::JsonObjectGrammar());
  std::ifstream in(spec);
  if (!in) return absl::NotFoundError("cannot read " + spec);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (spec.ends_with(".gbnf")) return text;
  absl::StatusOr<grammar::Grammar> g = grammar::JsonSchemaToGrammar(text);
  if (!g.ok()) return g.status();
  return grammar::PrintGbnf(*g);
}

// --grammar: decode with and without the grammar, alternated over `rounds` rounds.
int RunGrammarComparison(Subject& s, const std::string& spec, int threads, int steps,
                         std::vector<int> batches, int rounds, bool closing) {
  absl::StatusOr<std::string> gbnf = GrammarText(spec);
  if (!gbnf.ok()) {
    std::fprintf(stderr, "--grammar %s: %s\n", spec.c_str(), gbnf.status().ToString().c_str());
    return 1;
  }
  const std::string dir = s.dir.substr(0, s.dir.find_first_of("@+"));
  auto compiler = expertmesh::worker::GrammarCompiler::ForModel(dir, s.engine->config());
  if (!compiler.ok() || !(*compiler)->enabled()) {
    std::fprintf(stderr, "%s: no vocabulary for grammars: %s\n", dir.c_str(),
                 compiler.ok() ? (*compiler)->unavailable_reason().c_str()
                               : compiler.status().ToString().c_str());
    return 1;
  }
  const auto c0 = Clock::now();
  auto compiled = (*compiler)->Compile(*gbnf);
  if (!compiled.ok()) {
    std::fprintf(stderr, "--grammar %s: %s\n", spec.c_str(), compiled.status().ToString().c_str());
    return 1;
  }
  // --closing: max_tokens leaves the shortest completion plus half the timed steps, so the
  // second half of them runs in the closing regime (a budget check and often a closing mask and
  // a redraw per row and step).
  const int64_t shortest = expertmesh::grammar::GrammarMatcher(*compiled).MinBytesToComplete();
  const int64_t grammar_max_tokens = closing ? shortest + 2 + steps / 2 : 0;
  std::printf("grammar %s: shortest completion %lld bytes%s\n", spec.c_str(),
              static_cast<long long>(shortest),
              closing ? "; max_tokens leaves it plus half the timed steps (--closing)" : "");
  std::printf("grammar %s: %zu bytes of GBNF, compiled in %.1f ms\n", spec.c_str(), gbnf->size(),
              1e3 * std::chrono::duration<double>(Clock::now() - c0).count());
  TimeDecode(*s.engine, 1, 4);  // warm-up: page in the weights
  for (int batch : batches) {
    std::vector<double> free_rates, constrained_rates;
    for (int round = 0; round < rounds; ++round) {
      // Alternate which goes first, so neither always follows the other.
      for (int k = 0; k < 2; ++k) {
        const bool constrained = (k == 0) == (round % 2 == 1);
        const expertmesh::engine::GrammarStats g0 = s.engine->Stats().grammar;
        const uint64_t steps0 = s.engine->Stats().steps;
        const Timed t = TimeDecode(*s.engine, batch, steps, constrained ? *compiled : nullptr,
                                   /*temperature=*/1.0f, grammar_max_tokens);
        (constrained ? constrained_rates : free_rates).push_back(t.rate());
        std::printf("round %d: batch %d %s: %.1f tok/s (mean batch %.1f, load %.2f)\n", round + 1,
                    batch, constrained ? "with grammar" : "without", t.rate(),
                    static_cast<double>(t.tokens) / steps, LoadAverage());
        if (constrained) {
          // The grammar's own costs, per engine step of this run (prefill and drain included):
          // the masks' fill on the helper thread, the part of it the forward pass did not hide,
          // and on the engine thread the masking of the logits and the budget checks (closing).
          const expertmesh::engine::GrammarStats g = s.engine->Stats().grammar;
          const double n = static_cast<double>(s.engine->Stats().steps - steps0);
          std::printf(
              "  grammar per step: mask fill %.3f ms (helper thread), not hidden %.3f ms, "
              "masking %.3f ms, budget %.3f ms (%llu rows needed closing, %llu redrawn)\n",
              1e3 * (g.fill_seconds - g0.fill_seconds) / n,
              1e3 * (g.wait_seconds - g0.wait_seconds) / n,
              1e3 * (g.masking_seconds - g0.masking_seconds) / n,
              1e3 * (g.closing_seconds - g0.closing_seconds) / n,
              static_cast<unsigned long long>(g.closing_checks - g0.closing_checks),
              static_cast<unsigned long long>(g.closing_redraws - g0.closing_redraws));
        }
        std::fflush(stdout);
      }
    }
    const double a = Median(free_rates), b = Median(constrained_rates);
    std::printf(
        "== %s [%s], %d threads: decode batch %d: %.1f tok/s without, %.1f tok/s with "
        "grammar %s (%.3fx; medians of %d rounds)\n",
        s.dir.c_str(), s.family.c_str(), threads, batch, a, b, spec.c_str(), b / a, rounds);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> positional;
  std::vector<int> prefill_lengths;
  int prefill_rounds = 3;
  bool closing = false;
  double probe_gib = 4;
  std::string grammar_spec;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--prefill-tokens" && has_value) {
      prefill_lengths = ParseInts(argv[++i]);
      if (prefill_lengths.empty()) return Usage(argv[0]);
    } else if (arg == "--grammar" && has_value) {
      grammar_spec = argv[++i];
    } else if (arg == "--closing") {
      closing = true;
    } else if (arg == "--rounds" && has_value) {
      prefill_rounds = std::atoi(argv[++i]);
      if (prefill_rounds <= 0) return Usage(argv[0]);
    } else if (arg == "--probe-gib" && has_value) {
      probe_gib = std::atof(argv[++i]);
      if (probe_gib <= 0) return Usage(argv[0]);
    } else if (arg.rfind("--", 0) == 0) {
      return Usage(argv[0]);
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.empty()) return Usage(argv[0]);
  const int threads = positional.size() > 1 ? std::atoi(positional[1].c_str()) : 2;
  const int steps = positional.size() > 2 ? std::atoi(positional[2].c_str()) : 64;
  expertmesh::engine::EngineOptions o;
  o.compute_dtype = expertmesh::DType::kBF16;
  o.max_model_len = 1024;
  for (int len : prefill_lengths) o.max_model_len = std::max<int64_t>(o.max_model_len, len + 16);
  // Every timed prompt is new, and a bench must not measure a cache hit by accident (the
  // 8 x 256 prefill passes once repeated the same prompts, so a later pass could skip work).
  o.enable_prefix_caching = false;
  std::vector<Subject> subjects;
  for (const std::string& dir : SplitDirs(positional[0])) {
    std::string spec = dir;
    expertmesh::engine::EngineOptions subject_options = o;
    if (spec.ends_with(kFp8LmHead)) {
      spec.resize(spec.size() - kFp8LmHead.size());
      subject_options.quantize_lm_head_fp8 = true;
    }
    auto e = LoadSubject(spec, subject_options, threads);
    if (!e.ok()) {
      std::fprintf(stderr, "%s: %s\n", dir.c_str(), e.status().ToString().c_str());
      return 1;
    }
    Subject s;
    s.dir = dir;
    s.engine = *std::move(e);
    s.family = FamilyOf(spec, *s.engine);
    s.active = static_cast<double>(s.engine->model().active_weight_bytes_per_token());
    std::printf("%s: kernel family %s, %d threads, weights %.1f MB, prefetch into the %s\n",
                dir.c_str(), s.family.c_str(), threads, s.engine->model().weight_bytes() / 1e6,
                std::string(expertmesh::kernels::cpu::PrefetchLevelName(
                                expertmesh::kernels::cpu::StreamingPrefetchLevel()))
                    .c_str());
    subjects.push_back(std::move(s));
  }
  std::fflush(stdout);

  if (!grammar_spec.empty()) {
    std::vector<int> batches = {1, 32};
    if (positional.size() > 3) batches = {std::atoi(positional[3].c_str())};
    return RunGrammarComparison(subjects.front(), grammar_spec, threads, steps, batches,
                                prefill_rounds, closing);
  }

  if (!prefill_lengths.empty()) {
    // One prompt at a time, the models alternated within each round and length, so that the
    // models compared see the same drift. A short prompt first pages in the weights.
    for (Subject& s : subjects) {
      TimeToFirstToken(*s.engine, 64);
      s.ttft.resize(prefill_lengths.size());
    }
    for (int round = 0; round < prefill_rounds; ++round) {
      for (size_t l = 0; l < prefill_lengths.size(); ++l) {
        for (Subject& s : subjects) {
          const int len = prefill_lengths[l];
          const double secs = TimeToFirstToken(*s.engine, len);
          s.ttft[l].push_back(secs);
          std::printf(
              "round %d: prefill %d tokens: %s %.3f s to first token, %.1f tok/s (load %.2f)\n",
              round + 1, len, s.dir.c_str(), secs, len / secs, LoadAverage());
          std::fflush(stdout);
        }
      }
    }
    for (size_t l = 0; l < prefill_lengths.size(); ++l) {
      const int len = prefill_lengths[l];
      for (const Subject& s : subjects) {
        const double med = Median(s.ttft[l]);
        std::printf(
            "== %s [%s]: prefill of one %d-token prompt: %.3f s to first token, %.1f tok/s "
            "(median of %d rounds; best %.1f tok/s)\n",
            s.dir.c_str(), s.family.c_str(), len, med, len / med, prefill_rounds,
            len / *std::min_element(s.ttft[l].begin(), s.ttft[l].end()));
      }
      for (size_t i = 1; i < subjects.size(); ++i) {
        std::printf("%s vs %s: prefill %d %.2fx\n", subjects[i].dir.c_str(),
                    subjects[0].dir.c_str(), len,
                    Median(subjects[0].ttft[l]) / Median(subjects[i].ttft[l]));
      }
    }
    return 0;
  }

  if (positional.size() > 3) {
    const int batch = std::atoi(positional[3].c_str());
    for (Subject& s : subjects) {
      TimeDecode(*s.engine, batch, 4);  // warm-up: page in the weights
      std::printf("%s [%s]: decode batch %d: %.1f tok/s (load %.2f)\n", s.dir.c_str(),
                  s.family.c_str(), batch, TimeDecode(*s.engine, batch, steps).rate(),
                  LoadAverage());
    }
    return 0;
  }
  const ReadBandwidthProbe probe(threads, static_cast<uint64_t>(probe_gib * (1 << 30)),
                                 LastLevelCacheBytes());
  std::printf(
      "read bandwidth probe: %.1f GiB buffer (%.1fx the %.0f MiB last-level cache%s), %d "
      "threads x %d interleaved streams, software prefetch (L1 4 KiB ahead, L2 4 and 16 KiB "
      "ahead), best of 3 passes of each per round\n",
      probe.bytes() / double(1 << 30),
      probe.bytes() / double(std::max<uint64_t>(probe.llc_bytes(), 1)),
      probe.llc_bytes() / double(1 << 20),
      probe.bounded() ? "; bounded to half the available memory" : "", threads,
      expertmesh::bench::kProbeStreams);
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
          "roofline%s) (load %.2f)\n",
          round + 1, bw / 1e9, s.dir.c_str(), r1.rate(), 100 * s.fractions.back(),
          s.fractions.back() > 1 ? ": above the probe, see the note" : "", LoadAverage());
      std::fflush(stdout);
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
      std::printf("prefill pass %d: %s %.1f tok/s (load %.2f)\n", pass + 1, s.dir.c_str(),
                  s.prefill_passes.back(), LoadAverage());
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
      "passes of each prefetch over %.1f GiB)\n",
      bw / 1e9, threads, kRounds, probe.bytes() / double(1 << 30));
  bool above_probe = false;
  for (const Subject& s : subjects) {
    const double fraction = Median(s.fractions);
    std::printf("== %s (backend %s, kernel family %s)\n", s.dir.c_str(),
                std::string(s.engine->backend().Name()).c_str(), s.family.c_str());
    std::printf("weights %.1f MB, active per token %.1f MB\n",
                s.engine->model().weight_bytes() / 1e6, s.active / 1e6);
    std::printf(
        "batch 1 roofline %.1f tok/s; decode batch 1: %.1f tok/s (%.0f%% of roofline%s, median "
        "round; %.1f GB/s of weights)\n",
        bw / s.active, s.b1.rate(), 100 * fraction,
        fraction > 1 ? ": above the probe, see the note" : "", s.b1.rate() * s.active / 1e9);
    std::printf("decode batch 8: %.1f tok/s (%.1fx batch 1)\n", s.b8.rate(),
                s.b8.rate() / s.b1.rate());
    std::printf("decode batch 32: %.1f tok/s (%.1fx batch 1)\n", s.b32.rate(),
                s.b32.rate() / s.b1.rate());
    std::printf("prefill (8 prompts x 256 tokens): %.1f tok/s\n", s.prefill);
    for (double f : s.fractions) above_probe = above_probe || f > 1;
  }
  if (above_probe) {
    double active = 0;
    for (const Subject& s : subjects) active = std::max(active, s.active);
    PrintAboveProbeReason(probe, active);
  }
  for (size_t i = 1; i < subjects.size(); ++i) {
    const Subject &a = subjects[i], &b = subjects[0];
    std::printf("%s vs %s: batch 1 %.2fx, batch 8 %.2fx, batch 32 %.2fx, prefill %.2fx\n",
                a.dir.c_str(), b.dir.c_str(), a.b1.rate() / b.b1.rate(), a.b8.rate() / b.b8.rate(),
                a.b32.rate() / b.b32.rate(), a.prefill / b.prefill);
  }
  return 0;
}
