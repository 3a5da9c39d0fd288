// Tokenizer throughput on the committed corpus with the real DeepSeek-V3 and Qwen2 tokenizers
// (fetched by tools/tokenizer/fetch_reference_tokenizers.sh). tools/tokenizer/bench.sh runs it
// beside HF `tokenizers` and prints both. Reports bytes/s of input text (or of decoded text).
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "benchmark/benchmark.h"
#include "common/file_util.h"
#include "model/tokenizer/streaming_detokenizer.h"
#include "model/tokenizer/tokenizer.h"

namespace expertmesh::tokenizer {
namespace {

std::string TokenizerRoot() {
  if (const char* dir = std::getenv("EXPERTMESH_TOKENIZER_DIR")) return dir;
  return std::string(EXPERTMESH_BINARY_DIR) + "/test-data/tokenizers";
}

const std::vector<std::string>& CorpusDocs() {
  static const std::vector<std::string>* docs = [] {
    const std::string path =
        std::string(EXPERTMESH_SOURCE_DIR) + "/tests/model/tokenizer/data/corpus.txt";
    absl::StatusOr<std::string> text = ReadFileToString(path);
    if (!text.ok()) {
      fprintf(stderr, "tokenizer_bench: %s\n", text.status().ToString().c_str());
      std::exit(1);
    }
    auto* out = new std::vector<std::string>(absl::StrSplit(*text, "\n<<<DOC>>>\n"));
    return out;
  }();
  return *docs;
}

size_t CorpusBytes() {
  size_t n = 0;
  for (const std::string& d : CorpusDocs()) n += d.size();
  return n;
}

const Tokenizer* GetTokenizer(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>>* cache =
      new std::map<std::string, std::unique_ptr<Tokenizer>>();
  auto it = cache->find(name);
  if (it != cache->end()) return it->second.get();
  auto tok = Tokenizer::LoadFromDirectory(TokenizerRoot() + "/" + name);
  if (!tok.ok()) {
    fprintf(stderr, "tokenizer_bench: %s\n(run tools/tokenizer/fetch_reference_tokenizers.sh)\n",
            tok.status().ToString().c_str());
    std::exit(1);
  }
  return cache->emplace(name, std::move(*tok)).first->second.get();
}

// Encodes every corpus document once per iteration (the word cache is warm after the first).
void BM_Encode(benchmark::State& state, const std::string& name) {
  const Tokenizer* tok = GetTokenizer(name);
  size_t tokens = 0;
  for (auto _ : state) {
    for (const std::string& doc : CorpusDocs()) {
      auto ids = tok->Encode(doc, false);
      if (!ids.ok()) state.SkipWithError(ids.status().ToString().c_str());
      tokens += ids->size();
      benchmark::DoNotOptimize(ids->data());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * CorpusBytes()));
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
}

void BM_Decode(benchmark::State& state, const std::string& name) {
  const Tokenizer* tok = GetTokenizer(name);
  std::vector<std::vector<int32_t>> encoded;
  for (const std::string& doc : CorpusDocs()) encoded.push_back(*tok->Encode(doc, false));
  for (auto _ : state) {
    for (const auto& ids : encoded) benchmark::DoNotOptimize(tok->Decode(ids, false));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * CorpusBytes()));
}

void BM_StreamingDetokenize(benchmark::State& state, const std::string& name) {
  const Tokenizer* tok = GetTokenizer(name);
  std::vector<std::vector<int32_t>> encoded;
  for (const std::string& doc : CorpusDocs()) encoded.push_back(*tok->Encode(doc, false));
  for (auto _ : state) {
    for (const auto& ids : encoded) {
      StreamingDetokenizer stream(*tok, false);
      for (int32_t id : ids) benchmark::DoNotOptimize(stream.Add(id));
      benchmark::DoNotOptimize(stream.Finish());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * CorpusBytes()));
}

BENCHMARK_CAPTURE(BM_Encode, deepseek_v3, std::string("deepseek-v3"))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Encode, qwen2, std::string("qwen2"))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// Several threads encoding at once (each has its own word cache): the router's situation.
BENCHMARK_CAPTURE(BM_Encode, deepseek_v3, std::string("deepseek-v3"))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Threads(2);
BENCHMARK_CAPTURE(BM_Encode, qwen2, std::string("qwen2"))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Threads(2);
BENCHMARK_CAPTURE(BM_Decode, deepseek_v3, std::string("deepseek-v3"))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Decode, qwen2, std::string("qwen2"))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_StreamingDetokenize, deepseek_v3, std::string("deepseek-v3"))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_StreamingDetokenize, qwen2, std::string("qwen2"))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace expertmesh::tokenizer

BENCHMARK_MAIN();
