// Per-token cost of constrained decoding's token mask (GrammarMatcher::FillNextTokenBitmask) at
// the real Qwen2 vocabulary (151k tokens), over the structured-output schema corpus
// (tests/data/structured/schemas, compiled through JsonSchemaToGrammar) and json_object.
//
// For each grammar a valid instance is made once (a seeded random walk of the grammar over the
// vocabulary that then closes along tokens that shorten the completion), re-tokenized with the
// tokenizer as a model would emit it, and fed token by token; every FillNextTokenBitmask call is
// timed. Counters: p50_us / p99_us / max_us of those calls; closing_tight_p50_us /
// closing_tight_max_us / closing_loose_max_us of FillClosingBitmask at every token (budget
// MinBytesToComplete() - 1, the tightest the worker asks for, and + 4); compile_ms
// (CompiledGrammar::Compile, first and only compile), tokens per instance, uncertain tokens and the
// size of the tables.
//
// The tokenizer comes from $EXPERTMESH_TOKENIZER_DIR/qwen2 or ${build}/test-data/tokenizers/qwen2
// (tools/tokenizer/fetch_reference_tokenizers.sh); without it every benchmark is skipped with a
// message. The targets: p50 < 50 us, p99 < 500 us.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "common/file_util.h"
#include "model/grammar/engine/compiled_grammar.h"
#include "model/grammar/engine/grammar_matcher.h"
#include "model/grammar/engine/token_vocabulary.h"
#include "model/grammar/json_schema.h"
#include "model/tokenizer/tokenizer.h"

namespace expertmesh::grammar {
namespace {

struct Env {
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  std::shared_ptr<const TokenVocabulary> vocab;
};

std::string TokenizerDir() {
  std::string root = std::string(EXPERTMESH_BINARY_DIR) + "/test-data/tokenizers";
  if (const char* env = std::getenv("EXPERTMESH_TOKENIZER_DIR")) root = env;
  return root + "/qwen2";
}

// Null (and a message once) when the tokenizer is not there.
const Env* GetEnv() {
  static const Env* env = []() -> const Env* {
    auto tok = tokenizer::Tokenizer::LoadFromDirectory(TokenizerDir());
    if (!tok.ok()) {
      fprintf(stderr,
              "grammar_mask_bench: no Qwen2 tokenizer at %s (%s); run "
              "tools/tokenizer/fetch_reference_tokenizers.sh or set EXPERTMESH_TOKENIZER_DIR\n",
              TokenizerDir().c_str(), tok.status().ToString().c_str());
      return nullptr;
    }
    auto* e = new Env();
    e->tokenizer = std::move(*tok);
    std::vector<int32_t> eos = e->tokenizer->special_tokens().stop_ids;
    if (eos.empty() && e->tokenizer->eos_id() >= 0) eos.push_back(e->tokenizer->eos_id());
    // Qwen2's lm_head has 151936 rows, more than the tokenizer's ids: pad as a checkpoint does.
    const int32_t rows = std::max(e->tokenizer->vocab_size(), 151936);
    auto vocab = TokenVocabulary::FromTokenizer(*e->tokenizer, eos, rows);
    if (!vocab.ok()) {
      fprintf(stderr, "grammar_mask_bench: %s\n", vocab.status().ToString().c_str());
      std::exit(1);
    }
    e->vocab = *vocab;
    return e;
  }();
  return env;
}

struct Case {
  std::shared_ptr<const CompiledGrammar> compiled;
  double compile_ms = 0;
  std::vector<int32_t> tokens;  // the instance, as the tokenizer encodes it
  std::string error;
};

bool HasBit(const std::vector<uint32_t>& m, int32_t id) { return (m[id >> 5] >> (id & 31)) & 1; }

std::vector<int32_t> SetBits(const std::vector<uint32_t>& m, const TokenVocabulary& v) {
  std::vector<int32_t> ids;
  for (int32_t id = 0; id < v.tokenizer_size(); ++id) {
    if (HasBit(m, id) && !v.is_eos(id)) ids.push_back(id);
  }
  return ids;
}

// A valid instance: random allowed tokens, then tokens that bring the end nearer.
std::string MakeInstance(const std::shared_ptr<const CompiledGrammar>& g, uint32_t seed) {
  const TokenVocabulary& v = g->vocab();
  GrammarMatcher m(g);
  std::mt19937 rng(seed);
  std::vector<uint32_t> mask(v.mask_words());
  std::string text;
  for (int step = 0; step < 400; ++step) {
    if (step < 40) {
      m.FillNextTokenBitmask(mask);
    } else {
      if (m.CanTerminate()) break;
      m.FillClosingBitmask(mask, m.MinBytesToComplete() - 1);
    }
    const std::vector<int32_t> ids = SetBits(mask, v);
    if (ids.empty()) break;
    int32_t t = ids[rng() % ids.size()];
    // While walking at random, avoid tokens after which the grammar can only end.
    for (int retry = 0; step < 40 && retry < 32 && m.MinBytesToCompleteAfter(t) == 0; ++retry) {
      t = ids[rng() % ids.size()];
    }
    if (!m.AcceptToken(t).ok()) break;
    text.append(v.token_bytes(t));
  }
  return m.CanTerminate() ? text : std::string();
}

Case Prepare(const Env& env, const Grammar& g, const std::string& instance) {
  Case c;
  const auto start = std::chrono::steady_clock::now();
  auto compiled = CompiledGrammar::Compile(g, env.vocab);
  c.compile_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (!compiled.ok()) {
    c.error = compiled.status().ToString();
    return c;
  }
  c.compiled = *compiled;
  const std::string text = instance.empty() ? MakeInstance(c.compiled, 7) : instance;
  if (text.empty()) {
    c.error = "could not make an instance";
    return c;
  }
  auto ids = env.tokenizer->Encode(text, /*add_special_tokens=*/false);
  if (!ids.ok()) {
    c.error = ids.status().ToString();
    return c;
  }
  c.tokens = *ids;
  return c;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// Every timed FillNextTokenBitmask of every case run so far (BM_Summary reports them).
std::vector<double>& AllMaskUs() {
  static std::vector<double>* all = new std::vector<double>();
  return *all;
}
std::vector<double>& AllCompileMs() {
  static std::vector<double>* all = new std::vector<double>();
  return *all;
}

void RunCase(benchmark::State& state, const Case& c) {
  if (!c.error.empty()) {
    state.SkipWithError(c.error.c_str());
    return;
  }
  std::vector<uint32_t> mask(c.compiled->vocab().mask_words());
  std::vector<double> us;
  // The closing mask once per token of the instance, at the tightest budget the worker uses
  // (what the grammar needs minus one: only tokens that make progress) and a looser one.
  std::vector<double> tight_us;
  std::vector<double> loose_us;
  {
    GrammarMatcher m(c.compiled);
    for (int32_t t : c.tokens) {
      for (const bool tight : {true, false}) {
        const int64_t budget = m.MinBytesToComplete() + (tight ? -1 : 4);
        const auto t0 = std::chrono::steady_clock::now();
        m.FillClosingBitmask(mask, budget);
        const auto t1 = std::chrono::steady_clock::now();
        (tight ? tight_us : loose_us)
            .push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      }
      if (!m.AcceptToken(t).ok()) break;
    }
  }
  for (auto _ : state) {
    GrammarMatcher m(c.compiled);
    for (int32_t t : c.tokens) {
      const auto t0 = std::chrono::steady_clock::now();
      m.FillNextTokenBitmask(mask);
      const auto t1 = std::chrono::steady_clock::now();
      us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      benchmark::DoNotOptimize(mask.data());
      if (!HasBit(mask, t) || !m.AcceptToken(t).ok()) {
        state.SkipWithError("the instance's token is not allowed");
        return;
      }
    }
  }
  AllMaskUs().insert(AllMaskUs().end(), us.begin(), us.end());
  AllCompileMs().push_back(c.compile_ms);
  state.counters["p50_us"] = Percentile(us, 0.5);
  state.counters["p99_us"] = Percentile(us, 0.99);
  state.counters["max_us"] = us.empty() ? 0 : *std::max_element(us.begin(), us.end());
  auto max_of = [](const std::vector<double>& v) {
    return v.empty() ? 0.0 : *std::max_element(v.begin(), v.end());
  };
  state.counters["closing_tight_p50_us"] = Percentile(tight_us, 0.5);
  state.counters["closing_tight_max_us"] = max_of(tight_us);
  state.counters["closing_loose_max_us"] = max_of(loose_us);
  state.counters["compile_ms"] = c.compile_ms;
  state.counters["tokens"] = static_cast<double>(c.tokens.size());
  state.counters["uncertain"] = static_cast<double>(c.compiled->stats().uncertain_tokens);
  state.counters["mask_nodes"] = c.compiled->stats().mask_nodes;
  state.counters["table_kb"] = static_cast<double>(c.compiled->stats().table_bytes) / 1024.0;
}

void RegisterAll() {
  std::vector<std::pair<std::string, std::string>> schemas;  // name, path
  const std::string dir = std::string(EXPERTMESH_SOURCE_DIR) + "/tests/data/structured/schemas";
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".json") {
      schemas.push_back({entry.path().stem().string(), entry.path().string()});
    }
  }
  std::sort(schemas.begin(), schemas.end());
  for (const auto& [name, path] : schemas) {
    benchmark::RegisterBenchmark(("BM_Schema/" + name).c_str(),
                                 [path = path](benchmark::State& state) {
                                   const Env* env = GetEnv();
                                   if (env == nullptr) {
                                     state.SkipWithError("no Qwen2 tokenizer (see stderr)");
                                     return;
                                   }
                                   static std::map<std::string, Case>* cases =
                                       new std::map<std::string, Case>();
                                   auto it = cases->find(path);
                                   if (it == cases->end()) {
                                     Case c;
                                     auto text = ReadFileToString(path);
                                     auto g = text.ok() ? JsonSchemaToGrammar(*text)
                                                        : absl::StatusOr<Grammar>(text.status());
                                     if (g.ok()) {
                                       c = Prepare(*env, *g, "");
                                     } else {
                                       c.error = g.status().ToString();
                                     }
                                     it = cases->emplace(path, std::move(c)).first;
                                   }
                                   RunCase(state, it->second);
                                 })
        ->Iterations(3)
        ->Unit(benchmark::kMillisecond);
  }
  for (const bool generated : {false, true}) {
    benchmark::RegisterBenchmark(
        generated ? "BM_JsonObject/random_instance" : "BM_JsonObject/written_instance",
        [generated](benchmark::State& state) {
          const Env* env = GetEnv();
          if (env == nullptr) {
            state.SkipWithError("no Qwen2 tokenizer (see stderr)");
            return;
          }
          static const std::string kWritten =
              "{\n  \"id\": 8812,\n  \"name\": \"Ada Lovelace\",\n  \"tags\": [\"math\", "
              "\"poetry\", \"engines\"],\n  \"address\": {\"city\": \"London\", \"zip\": null},\n"
              "  \"scores\": [1.5, -2e3, 0.25],\n  \"active\": true,\n  \"note\": \"says "
              "\\\"hello\\\" \\u00e9t\\u00e9 \xe6\x97\xa5\xe6\x9c\xac\"\n}";
          static std::map<bool, Case>* cases = new std::map<bool, Case>();
          auto it = cases->find(generated);
          if (it == cases->end()) {
            it = cases
                     ->emplace(generated,
                               Prepare(*env, JsonObjectGrammar(), generated ? "" : kWritten))
                     .first;
          }
          RunCase(state, it->second);
        })
        ->Iterations(3)
        ->Unit(benchmark::kMillisecond);
  }
  // Runs last: the distribution over every token of every grammar above.
  benchmark::RegisterBenchmark("BM_Summary", [](benchmark::State& state) {
    for (auto _ : state) {
    }
    const std::vector<double>& us = AllMaskUs();
    state.counters["grammars"] = static_cast<double>(AllCompileMs().size());
    state.counters["masks"] = static_cast<double>(us.size());
    state.counters["p50_us"] = Percentile(us, 0.5);
    state.counters["p99_us"] = Percentile(us, 0.99);
    state.counters["max_us"] = us.empty() ? 0 : *std::max_element(us.begin(), us.end());
    state.counters["compile_p50_ms"] = Percentile(AllCompileMs(), 0.5);
    state.counters["compile_max_ms"] =
        AllCompileMs().empty() ? 0
                               : *std::max_element(AllCompileMs().begin(), AllCompileMs().end());
  })->Iterations(1);
}

}  // namespace
}  // namespace expertmesh::grammar

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  expertmesh::grammar::RegisterAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
