// Constrained decoding in the engine, on a tiny random make-model checkpoint and its tokenizer:
// a random model never closes a JSON string by itself, so every output that parses and ends with
// an end of sequence within max_tokens shows the masks and the budget closing at work. Also:
// the same tokens alone and in any batch (and after preemptions), choices, stop token ids as
// ends, raw logprobs, and requests refused at submission.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/grammar/gbnf.h"
#include "model/grammar/json_schema.h"
#include "model/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "tests/util/cpu_engine.h"
#include "tests/util/fake_device_backend.h"
#include "tests/worker/engine/grammar_test_util.h"
#include "tests/worker/models/model_test_util.h"
#include "worker/engine/engine.h"
#include "worker/grammar/grammar_compiler.h"

namespace expertmesh::engine {
namespace {

using scheduler::FinishReason;
using scheduler::GenerationRequest;

struct Output {
  std::vector<int32_t> tokens;
  std::vector<sampling::SampledToken> sampled;
  FinishReason finish = FinishReason::kNone;
};

class GrammarDecodeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto dir = models::testing::MakeTestModel(model::Architecture::kQwen3Moe, "tiny", "grammar");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = new std::string(*dir);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(dir_, nullptr);
    auto tok = tokenizer::Tokenizer::LoadFromDirectory(*dir_);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = *std::move(tok);
    engine_ = Make();
    ASSERT_NE(engine_, nullptr);
    auto compiler = worker::GrammarCompiler::ForModel(*dir_, engine_->config());
    ASSERT_TRUE(compiler.ok()) << compiler.status();
    compiler_ = *std::move(compiler);
    ASSERT_TRUE(compiler_->enabled()) << compiler_->unavailable_reason();
    for (int64_t id : engine_->config().eos_token_ids) eos_.insert(static_cast<int32_t>(id));
  }

  std::unique_ptr<Engine> Make(uint64_t kv_cache_bytes = 16u << 20) {
    EngineOptions o;
    o.compute_dtype = DType::kF32;
    o.block_size = 4;
    o.max_num_batched_tokens = 64;
    o.max_model_len = 256;
    o.kv_cache_bytes = kv_cache_bytes;
    // Batch-invariant kernels: a request alone and in a batch must see the same logits.
    auto e = expertmesh::testing::LoadCpuEngine(*dir_, o, /*threads=*/2, /*batch_invariant=*/true);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  }

  std::shared_ptr<const grammar::CompiledGrammar> Compile(const std::string& gbnf) {
    auto g = compiler_->Compile(gbnf);
    EXPECT_TRUE(g.ok()) << g.status();
    return g.ok() ? *g : nullptr;
  }

  GenerationRequest Request(std::string id, const std::string& gbnf, float temperature,
                            uint64_t seed, int64_t max_tokens) {
    GenerationRequest r;
    r.id = std::move(id);
    auto prompt = tokenizer_->Encode("Reply in JSON: " + r.id, false);
    EXPECT_TRUE(prompt.ok());
    r.prompt = *prompt;
    r.sampling.temperature = temperature;
    r.sampling.seed = seed;
    r.max_tokens = max_tokens;
    if (!gbnf.empty()) r.grammar = Compile(gbnf);
    return r;
  }

  static std::map<std::string, Output> RunAll(Engine& e) {
    std::map<std::string, Output> out;
    for (int steps = 0; e.HasWork() && steps < 10000; ++steps) {
      auto r = e.Step();
      EXPECT_TRUE(r.ok()) << r.status();
      if (!r.ok()) break;
      for (const RequestOutput& o : *r) {
        Output& x = out[o.id];
        x.tokens.push_back(o.token.token);
        x.sampled.push_back(o.token);
        x.finish = o.finish;
      }
    }
    return out;
  }

  // The text before the final end of sequence, after checking the output ended with one.
  std::string EndedText(const Output& o, int64_t max_tokens, const std::set<int32_t>& ends) {
    EXPECT_EQ(o.finish, FinishReason::kStop);
    EXPECT_FALSE(o.tokens.empty());
    EXPECT_LE(static_cast<int64_t>(o.tokens.size()), max_tokens);
    if (o.tokens.empty()) return "";
    EXPECT_TRUE(ends.contains(o.tokens.back())) << "last token " << o.tokens.back();
    return expertmesh::testing::TextOf(
        *tokenizer_, std::span<const int32_t>(o.tokens).first(o.tokens.size() - 1));
  }

  static nlohmann::json ParseOrFail(const std::string& text) {
    nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(j.is_discarded()) << "not JSON: " << text;
    return j;
  }

  static std::string* dir_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<worker::GrammarCompiler> compiler_;
  std::set<int32_t> eos_;
};

std::string* GrammarDecodeTest::dir_ = nullptr;

// Every seed, temperature and batch size: a JSON object ending with eos within max_tokens.
TEST_F(GrammarDecodeTest, JsonObjectOutputsParseAndEndWithEos) {
  for (int batch : {1, 8}) {
    for (float temperature : {0.0f, 1.0f}) {
      auto e = Make();
      std::map<std::string, int64_t> max_tokens;
      for (int i = 0; i < batch; ++i) {
        const std::string id = "obj" + std::to_string(batch) + "t" +
                               std::to_string(static_cast<int>(temperature)) + "s" +
                               std::to_string(i);
        max_tokens[id] = 12 + 5 * i;
        ASSERT_TRUE(e->AddRequest(Request(id, expertmesh::testing::kJsonObjectGbnf, temperature,
                                          100 + i, max_tokens[id]))
                        .ok());
      }
      auto out = RunAll(*e);
      ASSERT_EQ(out.size(), static_cast<size_t>(batch));
      for (const auto& [id, o] : out) {
        SCOPED_TRACE(id);
        const nlohmann::json j = ParseOrFail(EndedText(o, max_tokens[id], eos_));
        EXPECT_TRUE(j.is_object());
      }
    }
  }
}

TEST_F(GrammarDecodeTest, SchemaGrammarOutputsHaveTheSchemasFields) {
  auto e = Make();
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(
        e->AddRequest(Request("person" + std::to_string(i), expertmesh::testing::kPersonGbnf,
                              i % 2 ? 1.0f : 0.0f, i, 40 + 3 * i))
            .ok());
  }
  auto out = RunAll(*e);
  ASSERT_EQ(out.size(), 8u);
  for (const auto& [id, o] : out) {
    SCOPED_TRACE(id);
    const nlohmann::json j = ParseOrFail(EndedText(o, 40 + 3 * (id.back() - '0'), eos_));
    ASSERT_TRUE(j.is_object());
    EXPECT_TRUE(j["name"].is_string());
    EXPECT_TRUE(j["age"].is_number_integer());
    EXPECT_TRUE(j["tags"].is_array());
  }
}

// The tightest budgets: the shortest object "{}" needs at least 2 tokens and the eos one more.
TEST_F(GrammarDecodeTest, ClosesWithinTinyBudgets) {
  auto e = Make();
  for (int64_t max_tokens : {3, 4, 5, 6, 8}) {
    for (float temperature : {0.0f, 1.0f}) {
      ASSERT_TRUE(e->AddRequest(Request("tiny" + std::to_string(max_tokens) + "t" +
                                            std::to_string(static_cast<int>(temperature)),
                                        expertmesh::testing::kJsonObjectGbnf, temperature,
                                        static_cast<uint64_t>(max_tokens), max_tokens))
                      .ok());
    }
  }
  auto out = RunAll(*e);
  ASSERT_EQ(out.size(), 10u);
  for (const auto& [id, o] : out) {
    SCOPED_TRACE(id);
    const int64_t max_tokens = std::stoll(id.substr(4, id.find('t', 4) - 4));
    EXPECT_TRUE(ParseOrFail(EndedText(o, max_tokens, eos_)).is_object());
  }
}

// Schemas of the corpus through the router's path (JsonSchemaToGrammar, PrintGbnf): outputs parse
// and hold every required property.
TEST_F(GrammarDecodeTest, CorpusSchemasGiveTheirRequiredProperties) {
  for (const char* name : {"strict_person", "strict_classification", "strict_weather_query",
                           "strict_sentiment", "string_enum"}) {
    SCOPED_TRACE(name);
    std::ifstream in(std::string(EXPERTMESH_SOURCE_DIR) + "/tests/data/structured/schemas/" + name +
                     ".json");
    ASSERT_TRUE(in) << name;
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto g = grammar::JsonSchemaToGrammar(text);
    ASSERT_TRUE(g.ok()) << g.status();
    const std::string gbnf = grammar::PrintGbnf(*g);
    const nlohmann::json schema = nlohmann::json::parse(text);
    auto e = Make();
    constexpr int64_t kMaxTokens = 120;
    for (int i = 0; i < 4; ++i) {
      ASSERT_TRUE(e->AddRequest(Request(std::string(name) + std::to_string(i), gbnf,
                                        i % 2 ? 1.0f : 0.0f, 300 + i, kMaxTokens))
                      .ok());
    }
    for (const auto& [id, o] : RunAll(*e)) {
      SCOPED_TRACE(id);
      const nlohmann::json j = ParseOrFail(EndedText(o, kMaxTokens, eos_));
      if (schema.contains("required")) {
        ASSERT_TRUE(j.is_object());
        for (const auto& key : schema["required"]) {
          EXPECT_TRUE(j.contains(key.get<std::string>())) << key;
        }
      }
      if (schema.contains("enum")) {
        EXPECT_NE(std::find(schema["enum"].begin(), schema["enum"].end(), j), schema["enum"].end());
      }
    }
  }
}

// On a device backend (the fake one: CPU kernels behind device tensors), masks go to the device
// and closing copies its row back: the same tokens as on the CPU backend.
TEST_F(GrammarDecodeTest, SameTokensOnADeviceBackend) {
  EngineOptions o;
  o.compute_dtype = DType::kF32;
  o.block_size = 4;
  o.max_model_len = 256;
  o.kv_cache_bytes = 16u << 20;
  auto fake = expertmesh::testing::FakeDeviceBackend::Create();
  ASSERT_TRUE(fake.ok());
  auto device = Engine::Load(*dir_, *std::move(fake), o);
  ASSERT_TRUE(device.ok()) << device.status();
  auto cpu = expertmesh::testing::LoadCpuEngine(*dir_, o, /*threads=*/1);
  ASSERT_TRUE(cpu.ok());
  for (int i = 0; i < 6; ++i) {
    GenerationRequest r =
        Request("dev" + std::to_string(i),
                i % 2 ? expertmesh::testing::kPersonGbnf : expertmesh::testing::kJsonObjectGbnf,
                i % 3 == 0 ? 0.0f : 1.0f, 500 + i, 40 + 4 * i);
    if (i == 4) r.sampling.presence_penalty = 0.5f;  // a host-drawn row
    ASSERT_TRUE((*device)->AddRequest(r).ok());
    ASSERT_TRUE((*cpu)->AddRequest(r).ok());
  }
  auto on_device = RunAll(**device);
  auto on_cpu = RunAll(**cpu);
  ASSERT_EQ(on_device.size(), 6u);
  for (const auto& [id, out] : on_cpu) {
    SCOPED_TRACE(id);
    EXPECT_EQ(on_device[id].tokens, out.tokens);
    EXPECT_TRUE(ParseOrFail(EndedText(out, 60, eos_)).is_object());
  }
}

TEST_F(GrammarDecodeTest, ChoiceGrammarGivesOneOfTheChoices) {
  const std::set<std::string> choices = {"yes", "no", "maybe", "it depends"};
  auto e = Make();
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(
        e->AddRequest(Request("choice" + std::to_string(i), expertmesh::testing::kChoiceGbnf,
                              i % 2 ? 1.0f : 0.0f, 7 * i, 16))
            .ok());
  }
  for (const auto& [id, o] : RunAll(*e)) {
    SCOPED_TRACE(id);
    EXPECT_TRUE(choices.contains(EndedText(o, 16, eos_))) << EndedText(o, 16, eos_);
  }
}

// A request's stop token ids end it as eos does: only where the grammar may end.
TEST_F(GrammarDecodeTest, StopTokenIdsEndOnlyWhereTheGrammarMay) {
  auto im_end = tokenizer_->Encode("<|im_end|>", false);
  ASSERT_TRUE(im_end.ok());
  ASSERT_EQ(im_end->size(), 1u);
  std::set<int32_t> ends = eos_;
  ends.insert(im_end->front());
  auto e = Make();
  for (int i = 0; i < 6; ++i) {
    GenerationRequest r =
        Request("stop" + std::to_string(i), expertmesh::testing::kChoiceGbnf, 1.0f, 1000 + i, 16);
    r.stop_token_ids = {im_end->front()};
    ASSERT_TRUE(e->AddRequest(std::move(r)).ok());
  }
  const std::set<std::string> choices = {"yes", "no", "maybe", "it depends"};
  for (const auto& [id, o] : RunAll(*e)) {
    SCOPED_TRACE(id);
    EXPECT_TRUE(choices.contains(EndedText(o, 16, ends)));
  }
}

// Alone, in a batch of 8 with other constrained and unconstrained requests (host-drawn rows
// with penalties and logprobs among them), and with preemptions: the same tokens.
TEST_F(GrammarDecodeTest, SameTokensAloneInABatchAndAfterPreemption) {
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 8; ++i) {
    GenerationRequest r = Request(
        "mix" + std::to_string(i),
        i == 5 ? ""
               : (i % 2 ? expertmesh::testing::kPersonGbnf : expertmesh::testing::kJsonObjectGbnf),
        i % 3 == 0 ? 0.0f : 0.9f, 40 + i, 32 + 2 * i);
    if (i == 2) r.sampling.repetition_penalty = 1.3f;
    if (i == 3) {
      r.sampling.logprobs = true;
      r.sampling.top_logprobs = 3;
    }
    if (i == 4) r.sampling.top_k = 20;
    if (i == 6) r.sampling.top_p = 0.8f;
    reqs.push_back(std::move(r));
  }
  auto batch = Make();
  for (const GenerationRequest& r : reqs) ASSERT_TRUE(batch->AddRequest(r).ok());
  auto together = RunAll(*batch);
  // A pool of a few blocks more than one request needs: requests are preempted and recomputed.
  const uint64_t block_bytes = engine_->kv_cache_bytes() / engine_->num_kv_blocks();
  auto tight = Make(block_bytes * 40);
  ASSERT_NE(tight, nullptr);
  for (const GenerationRequest& r : reqs) ASSERT_TRUE(tight->AddRequest(r).ok());
  auto preempted = RunAll(*tight);
  EXPECT_GT(tight->Stats().scheduler.num_preemptions, 0);
  for (const GenerationRequest& r : reqs) {
    SCOPED_TRACE(r.id);
    auto alone_engine = Make();
    ASSERT_TRUE(alone_engine->AddRequest(r).ok());
    auto alone = RunAll(*alone_engine);
    EXPECT_EQ(alone[r.id].tokens, together[r.id].tokens);
    EXPECT_EQ(preempted[r.id].tokens, together[r.id].tokens);
    if (r.grammar != nullptr) {
      EXPECT_TRUE(ParseOrFail(EndedText(together[r.id], r.max_tokens, eos_)).is_object());
    }
  }
}

// logprobs describe the raw model, not the mask: the first token's top alternatives are those of
// the same prompt without a grammar, and the drawn token's logprob is its raw one.
TEST_F(GrammarDecodeTest, LogprobsStayTheRawModels) {
  GenerationRequest constrained = Request("raw", expertmesh::testing::kChoiceGbnf, 0.0f, 1, 8);
  constrained.sampling.logprobs = true;
  constrained.sampling.top_logprobs = sampling::kMaxTopLogprobs;
  GenerationRequest free = constrained;
  free.id = "free";
  free.grammar = nullptr;
  auto e = Make();
  ASSERT_TRUE(e->AddRequest(constrained).ok());
  ASSERT_TRUE(e->AddRequest(free).ok());
  auto out = RunAll(*e);
  const sampling::SampledToken& c = out["raw"].sampled.front();
  const sampling::SampledToken& f = out["free"].sampled.front();
  ASSERT_FALSE(f.top_logprobs.empty());
  EXPECT_EQ(c.top_logprobs, f.top_logprobs);
  EXPECT_EQ(f.logprob, f.top_logprobs.front().logprob);
  // The constrained token's logprob is its raw one: the entry of the raw top list when it is
  // there, else below all of them (under the mask alone it would be near 0, one of few choices).
  auto it = std::find_if(f.top_logprobs.begin(), f.top_logprobs.end(),
                         [&](const sampling::TokenLogprob& t) { return t.token == c.token; });
  if (it != f.top_logprobs.end()) {
    EXPECT_EQ(c.logprob, it->logprob);
  } else {
    EXPECT_LE(c.logprob, f.top_logprobs.back().logprob);
  }
}

TEST_F(GrammarDecodeTest, RefusesGrammarWithIgnoreEos) {
  GenerationRequest r = Request("ignore", expertmesh::testing::kChoiceGbnf, 0.0f, 1, 8);
  r.ignore_eos = true;
  absl::Status s = engine_->AddRequest(r);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("ignore_eos"), std::string::npos) << s;
  EXPECT_FALSE(engine_->HasWork());
}

TEST_F(GrammarDecodeTest, RefusesGrammarsThatDoNotParseOrCompile) {
  for (const char* bad : {"root ::= [", "root ::= \"a\" undefined_rule", "root ::= root \"a\"",
                          "not a grammar at all"}) {
    SCOPED_TRACE(bad);
    auto g = compiler_->Compile(bad);
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(g.status().message().find("grammar: "), std::string::npos);
  }
}

TEST_F(GrammarDecodeTest, ModelDirectoryWithoutTokenizerRefusesGrammars) {
  const std::string dir = std::string(EXPERTMESH_BINARY_DIR) + "/test-scratch/grammar-no-tokenizer";
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(*dir_ + "/config.json", dir + "/config.json",
                             std::filesystem::copy_options::overwrite_existing);
  auto compiler = worker::GrammarCompiler::ForModel(dir, engine_->config());
  ASSERT_TRUE(compiler.ok()) << compiler.status();
  EXPECT_FALSE((*compiler)->enabled());
  auto g = (*compiler)->Compile(expertmesh::testing::kChoiceGbnf);
  EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(g.status().message().find("tokenizer"), std::string::npos) << g.status();
}

}  // namespace
}  // namespace expertmesh::engine
