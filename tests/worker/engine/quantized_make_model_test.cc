// make-model's int4 (compressed-tensors, GPTQ) and per-channel fp8 checkpoints, end to end on the
// CPU backend: loaded as published (int4 repacked into kQ4, fp8 kept with per-row scales), they
// give the logits of their dequantized twin, the same checkpoint with every quantized weight
// unpacked here (from the published bit order, not through the writer or the loader) into f32
// values and loaded as a plain f32 model; and the engine generates the twin's greedy tokens. With
// --quantize-lm-head the lm_head is int4 too, on one rank and vocab-parallel over two.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/config/weight_layout.h"
#include "model/safetensors/checkpoint.h"
#include "nlohmann/json.hpp"
#include "tests/util/cpu_engine.h"
#include "tests/util/shared_model.h"
#include "tests/util/tensor_compare.h"
#include "tests/worker/comm/fake_communicator.h"
#include "tests/worker/models/model_test_util.h"
#include "tools/make_model/make_model.h"
#include "tools/make_model/safetensors_writer.h"

namespace expertmesh::engine {
namespace {

using model::LinearFormat;
using models::testing::Blocks;
using models::testing::RunStep;
using Logits = models::SequenceChunk::Logits;

struct Case {
  std::string name;
  model::Architecture arch;
  LinearFormat format;
  bool quantize_lm_head = false;
  std::string vocab_size;  // a config edit when not empty
};

std::string MakeQuantizedModel(const Case& c) {
  make_model::MakeModelOptions options;
  options.arch = c.arch;
  options.size = "tiny";
  options.quantization = c.format;
  options.quantize_lm_head = c.quantize_lm_head;
  if (!c.vocab_size.empty()) options.config_edits = {{"vocab_size", c.vocab_size}};
  options.dtype = c.format == LinearFormat::kInt4Gptq ? DType::kF16 : DType::kBF16;
  options.seed = 17;
  options.out_dir = absl::StrCat(EXPERTMESH_BINARY_DIR, "/test-scratch/models/quantized-", c.name);
  absl::StatusOr<std::string> dir = expertmesh::testing::MakeSharedModel(options);
  EXPECT_TRUE(dir.ok()) << dir.status();
  return dir.ok() ? *dir : std::string();
}

template <typename T>
T At(const model::TensorView& t, int64_t i) {
  T v;
  std::memcpy(&v, t.data.data() + sizeof(T) * i, sizeof(T));
  return v;
}

using model::FloatAt;

// Value j (0..7) of a packed int32 word: bits 4j..4j+3 in both published int4 packings.
int Nibble(int32_t word, int j) {
  return static_cast<int>((static_cast<uint32_t>(word) >> (4 * j)) & 0xf);
}

// The f32 weight [out, in] a quantized Linear of `ckpt` dequantizes to.
std::vector<float> Dequantize(const model::Checkpoint& ckpt, const model::LinearSpec& l,
                              int64_t group) {
  const auto get = [&](const std::string& suffix) { return *ckpt.Get(l.module + suffix); };
  const int64_t out = l.out, in = l.in;
  std::vector<float> w(static_cast<size_t>(out * in));
  switch (l.format) {
    case LinearFormat::kInt4CompressedTensors: {
      // weight_packed [out, in/8], q + 8 with input column 8k + j at bits 4j of word k;
      // weight_scale [out, in/G].
      const model::TensorView packed = get(".weight_packed"), scale = get(".weight_scale");
      for (int64_t r = 0; r < out; ++r) {
        for (int64_t c = 0; c < in; ++c) {
          const int q = Nibble(At<int32_t>(packed, r * (in / 8) + c / 8), c % 8);
          w[r * in + c] = static_cast<float>(q - 8) * FloatAt(scale, r * (in / group) + c / group);
        }
      }
      break;
    }
    case LinearFormat::kInt4Gptq: {
      // qweight [in/8, out], input row 8k + j at bits 4j; qzeros [in/G, out/8], output column
      // 8c + j at bits 4j, storing zero - 1 (v1); scales [in/G, out]; g_idx [in].
      const model::TensorView qweight = get(".qweight"), qzeros = get(".qzeros"),
                              scales = get(".scales"), g_idx = get(".g_idx");
      for (int64_t r = 0; r < out; ++r) {
        for (int64_t c = 0; c < in; ++c) {
          const int64_t g = At<int32_t>(g_idx, c);
          const int q = Nibble(At<int32_t>(qweight, (c / 8) * out + r), c % 8);
          const int zero = Nibble(At<int32_t>(qzeros, g * (out / 8) + r / 8), r % 8) + 1;
          w[r * in + c] = static_cast<float>(q - zero) * FloatAt(scales, g * out + r);
        }
      }
      break;
    }
    case LinearFormat::kFp8Channel: {
      const model::TensorView q = get(".weight"), scale = get(".weight_scale");
      for (int64_t r = 0; r < out; ++r) {
        for (int64_t c = 0; c < in; ++c) {
          w[r * in + c] = F8E4M3ToFloat(At<uint8_t>(q, r * in + c)) * FloatAt(scale, r);
        }
      }
      break;
    }
    default:
      ADD_FAILURE() << l.module << ": not a format make-model quantizes to";
      break;
  }
  return w;
}

class RawSource : public make_model::TensorSource {
 public:
  explicit RawSource(const std::vector<std::byte>* bytes) : bytes_(bytes) {}
  void Fill(std::span<std::byte> out) override {
    std::memcpy(out.data(), bytes_->data() + offset_, out.size());
    offset_ += out.size();
  }

 private:
  const std::vector<std::byte>* bytes_;
  size_t offset_ = 0;
};

// The dequantized f32 twin of `dir`, written next to it: quantized Linear layers as their f32
// values under `<module>.weight`, every other tensor widened to f32 (exact for float16 ones, as
// the loader holds them under fp32 compute), quantization_config gone.
absl::StatusOr<std::string> DequantizedTwin(const std::string& dir) {
  // Per process: ctest runs this file's cases two at a time, each in its own process.
  const std::string out = absl::StrCat(dir, "-dequantized-", getpid());
  std::filesystem::create_directories(out);
  absl::StatusOr<model::ModelConfig> config = model::LoadModelConfig(dir);
  if (!config.ok()) return config.status();
  absl::StatusOr<std::unique_ptr<model::Checkpoint>> ckpt = model::Checkpoint::Open(dir);
  if (!ckpt.ok()) return ckpt.status();
  const int64_t group =
      config->int4_quantization.has_value() ? config->int4_quantization->group_size : 0;
  std::map<std::string, model::LinearSpec> quantized;  // by `<module>.weight`
  for (const model::LinearSpec& l : model::LinearLayers(*config)) {
    if (l.format != LinearFormat::kPlain) quantized[l.module + ".weight"] = l;
  }
  model::ModelConfig plain = *config;
  plain.int4_quantization.reset();
  plain.fp8_quantization.reset();
  std::vector<make_model::TensorToWrite> specs;
  std::vector<std::vector<std::byte>> bytes;
  for (const model::TensorSpec& spec : model::ExpectedTensors(plain)) {
    std::vector<float> v;
    if (auto it = quantized.find(spec.name); it != quantized.end()) {
      v = Dequantize(**ckpt, it->second, group);
    } else {
      absl::StatusOr<model::TensorView> t = (*ckpt)->Get(spec.name);
      if (!t.ok()) return t.status();
      v.resize(static_cast<size_t>(t->NumElements()));
      for (size_t i = 0; i < v.size(); ++i) v[i] = FloatAt(*t, static_cast<int64_t>(i));
    }
    specs.push_back({spec.name, DType::kF32, spec.shape});
    const auto* raw = reinterpret_cast<const std::byte*>(v.data());
    bytes.emplace_back(raw, raw + v.size() * sizeof(float));
  }
  size_t next = 0;
  const absl::Status written = make_model::WriteSafetensorsFile(
      out + "/model.safetensors", specs,
      [&](const make_model::TensorToWrite&) -> std::unique_ptr<make_model::TensorSource> {
        return std::make_unique<RawSource>(&bytes[next++]);
      });
  if (!written.ok()) return written;
  std::ifstream in(dir + "/config.json");
  nlohmann::json json = nlohmann::json::parse(in);
  json.erase("quantization_config");
  json["torch_dtype"] = "float32";
  std::ofstream(out + "/config.json") << json.dump(2);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "generation_config.json"}) {
    std::filesystem::copy_file(dir + "/" + f, out + "/" + f,
                               std::filesystem::copy_options::overwrite_existing);
  }
  return out;
}

class QuantizedMakeModelTest : public ::testing::TestWithParam<Case> {};

TEST_P(QuantizedMakeModelTest, LogitsMatchTheDequantizedTwinOverPrefillAndDecode) {
  const std::string dir = MakeQuantizedModel(GetParam());
  ASSERT_FALSE(dir.empty());
  absl::StatusOr<std::string> twin_dir = DequantizedTwin(dir);
  ASSERT_TRUE(twin_dir.ok()) << twin_dir.status();
  auto backend = kernels::cpu::CpuBackend::Create({.num_threads = 2});
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto quantized = models::LoadModel(dir, backend->get(), {.compute_dtype = DType::kF32});
  auto twin = models::LoadModel(*twin_dir, backend->get(), {.compute_dtype = DType::kF32});
  ASSERT_TRUE(quantized.ok()) << quantized.status();
  ASSERT_TRUE(twin.ok()) << twin.status();
  // Packed weights: far fewer bytes than the f32 twin's, though the unquantized tensors (f32 in
  // both under fp32 compute, float16 ones included) are much of these tiny models.
  EXPECT_LT((*quantized)->weight_bytes() * 5, (*twin)->weight_bytes() * 3);
  const int64_t vocab = (*quantized)->config().vocab_size;
  std::vector<int32_t> tokens;
  for (int i = 0; i < 11; ++i) tokens.push_back(static_cast<int32_t>((i * 7919 + 13) % vocab));
  auto kv_q = models::AllocateKvCache(**backend, (*quantized)->kv_cache_spec(), 16, 4);
  auto kv_t = models::AllocateKvCache(**backend, (*twin)->kv_cache_spec(), 16, 4);
  ASSERT_TRUE(kv_q.ok() && kv_t.ok());
  const std::vector<int32_t> table = Blocks(0, 4);
  // The kernels compute (q - zero) x scale exactly in fp32; only summation orders differ.
  const expertmesh::testing::Tolerance tol{2e-4, 2e-3, 0.99999};
  for (size_t start = 0; start < tokens.size();) {
    const size_t len = start == 0 ? 8 : 1;
    const std::vector<models::SequenceChunk> chunk = {
        {.tokens = std::span(tokens).subspan(start, len),
         .start_pos = static_cast<int64_t>(start),
         .block_table = table,
         .logits = Logits::kLast}};
    auto a = RunStep(**quantized, *kv_q, chunk);
    auto b = RunStep(**twin, *kv_t, chunk);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_TRUE(expertmesh::testing::TensorsClose(*a, expertmesh::testing::ToDoubles(*b), tol))
        << "step at position " << start;
    start += len;
  }
}

// Greedy tokens of two requests through the engine (scheduler, KV cache, sampler).
absl::StatusOr<std::map<std::string, std::vector<int32_t>>> Generate(const std::string& dir) {
  EngineOptions options;
  options.compute_dtype = DType::kF32;
  options.block_size = 4;
  options.max_model_len = 64;
  options.kv_cache_bytes = 2u << 20;
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      expertmesh::testing::LoadCpuEngine(dir, options, /*threads=*/2);
  if (!engine.ok()) return engine.status();
  for (int i = 0; i < 2; ++i) {
    scheduler::GenerationRequest r;
    r.id = absl::StrCat("r", i);
    for (int j = 0; j < 5 + 4 * i; ++j) r.prompt.push_back(3 + (j * 131 + i * 17) % 1500);
    r.sampling.temperature = 0;
    r.max_tokens = 8;
    r.ignore_eos = true;
    if (absl::Status s = (*engine)->AddRequest(r); !s.ok()) return s;
  }
  std::map<std::string, std::vector<int32_t>> out;
  for (int steps = 0; (*engine)->HasWork() && steps < 1000; ++steps) {
    absl::StatusOr<std::vector<RequestOutput>> step = (*engine)->Step();
    if (!step.ok()) return step.status();
    for (const RequestOutput& o : *step) out[o.id].push_back(o.token.token);
  }
  return out;
}

TEST_P(QuantizedMakeModelTest, EngineGeneratesTheTwinsGreedyTokens) {
  const std::string dir = MakeQuantizedModel(GetParam());
  ASSERT_FALSE(dir.empty());
  absl::StatusOr<std::string> twin_dir = DequantizedTwin(dir);
  ASSERT_TRUE(twin_dir.ok()) << twin_dir.status();
  auto quantized = Generate(dir);
  auto twin = Generate(*twin_dir);
  ASSERT_TRUE(quantized.ok()) << quantized.status();
  ASSERT_TRUE(twin.ok()) << twin.status();
  ASSERT_EQ(quantized->size(), 2u);
  for (const auto& [id, tokens] : *quantized) EXPECT_EQ(tokens.size(), 8u) << id;
  EXPECT_EQ(*quantized, *twin);
}

INSTANTIATE_TEST_SUITE_P(
    Formats, QuantizedMakeModelTest,
    ::testing::Values(
        Case{"qwen3_moe_int4_ct", model::Architecture::kQwen3Moe,
             LinearFormat::kInt4CompressedTensors},
        Case{"qwen3_moe_int4_gptq", model::Architecture::kQwen3Moe, LinearFormat::kInt4Gptq},
        Case{"qwen3_moe_fp8_channel", model::Architecture::kQwen3Moe, LinearFormat::kFp8Channel},
        Case{"deepseek_v3_int4_ct", model::Architecture::kDeepseekV3,
             LinearFormat::kInt4CompressedTensors},
        Case{"deepseek_v3_int4_gptq", model::Architecture::kDeepseekV3, LinearFormat::kInt4Gptq},
        Case{"deepseek_v3_fp8_channel", model::Architecture::kDeepseekV3,
             LinearFormat::kFp8Channel},
        // lm_head int4 too (--quantize-lm-head), as GPTQModel and llm-compressor can write it.
        Case{"qwen3_moe_int4_ct_lm_head", model::Architecture::kQwen3Moe,
             LinearFormat::kInt4CompressedTensors, true},
        Case{"qwen3_moe_int4_gptq_lm_head", model::Architecture::kQwen3Moe, LinearFormat::kInt4Gptq,
             true}),
    [](const auto& info) { return info.param.name; });

// The logits of one prefill step (every row) of a group of tp x ep ranks (threads, CPU
// backends, a fake communicator), as rank `rank` sees them.
absl::StatusOr<std::vector<float>> GroupPrefillLogits(const std::string& dir, int tp, int ep,
                                                      const std::vector<int32_t>& prompt) {
  const int world = tp * ep;
  std::vector<std::unique_ptr<comm::Communicator>> comms =
      comm::CreateFakeGroup(world, absl::Seconds(60));
  std::vector<absl::StatusOr<std::vector<float>>> got(world, absl::UnknownError("not run"));
  std::vector<std::thread> ranks;
  for (int r = 0; r < world; ++r) {
    ranks.emplace_back([&, r] {
      got[r] = [&]() -> absl::StatusOr<std::vector<float>> {
        ASSIGN_OR_RETURN(std::unique_ptr<kernels::cpu::CpuBackend> backend,
                         kernels::cpu::CpuBackend::Create({.num_threads = 1}));
        models::ModelOptions options;
        options.compute_dtype = DType::kF32;
        options.shard = {.tp = tp, .ep = ep, .rank = r};
        if (world > 1) options.comm = comms[r].get();
        ASSIGN_OR_RETURN(std::unique_ptr<models::Model> model,
                         models::LoadModel(dir, backend.get(), options));
        ASSIGN_OR_RETURN(models::KvCacheTensors kv,
                         models::AllocateKvCache(*backend, model->kv_cache_spec(), 16, 4));
        const std::vector<int32_t> table = Blocks(0, 4);
        ASSIGN_OR_RETURN(kernels::Tensor logits, RunStep(*model, kv,
                                                         {{.tokens = prompt,
                                                           .start_pos = 0,
                                                           .block_table = table,
                                                           .logits = Logits::kAll}}));
        return std::vector<float>(logits.data<float>(), logits.data<float>() + logits.numel());
      }();
    });
  }
  for (std::thread& t : ranks) t.join();
  for (int r = 1; r < world; ++r) {
    if (!got[r].ok()) return got[r].status();
    if (got[0].ok() && *got[r] != *got[0]) {
      return absl::InternalError(absl::StrCat("rank ", r, "'s logits differ from rank 0's"));
    }
  }
  return got[0];
}

// A vocab-parallel int4 lm_head: each rank multiplies its rows of the packed table, the last
// rank's padded to ceil(V / world) (compressed-tensors with an odd vocabulary edited in: 2
// ranks pad one row; GPTQ's vocabulary is a multiple of 8, so its ranks split it evenly); the
// gathered logits are the dequantized twin's on one rank.
TEST(QuantizedLmHeadTest, VocabParallelLogitsMatchTheDequantizedTwin) {
  for (const auto& [c, tp, ep] :
       {std::tuple{Case{"qwen3_moe_int4_ct_lm_head_odd_vocab", model::Architecture::kQwen3Moe,
                        LinearFormat::kInt4CompressedTensors, true, "2175"},
                   2, 1},
        std::tuple{Case{"qwen3_moe_int4_gptq_lm_head", model::Architecture::kQwen3Moe,
                        LinearFormat::kInt4Gptq, true},
                   1, 2}}) {
    SCOPED_TRACE(absl::StrCat(c.name, " tp ", tp, " ep ", ep));
    const std::string dir = MakeQuantizedModel(c);
    ASSERT_FALSE(dir.empty());
    absl::StatusOr<model::ModelConfig> config = model::LoadModelConfig(dir);
    ASSERT_TRUE(config.ok()) << config.status();
    const int64_t vocab = config->vocab_size;
    if (!c.vocab_size.empty()) {
      ASSERT_EQ(vocab % (tp * ep), 1);  // the last rank pads one row
    }
    absl::StatusOr<std::string> twin_dir = DequantizedTwin(dir);
    ASSERT_TRUE(twin_dir.ok()) << twin_dir.status();
    std::vector<int32_t> prompt;
    for (int i = 0; i < 9; ++i) prompt.push_back(static_cast<int32_t>((i * 7919 + 13) % vocab));
    absl::StatusOr<std::vector<float>> group = GroupPrefillLogits(dir, tp, ep, prompt);
    ASSERT_TRUE(group.ok()) << group.status();
    absl::StatusOr<std::vector<float>> twin = GroupPrefillLogits(*twin_dir, 1, 1, prompt);
    ASSERT_TRUE(twin.ok()) << twin.status();
    ASSERT_EQ(group->size(), twin->size());
    ASSERT_EQ(group->size(), prompt.size() * static_cast<size_t>(vocab));
    double max_diff = 0;
    for (size_t i = 0; i < twin->size(); ++i) {
      max_diff = std::max(max_diff, std::abs(static_cast<double>((*group)[i]) - (*twin)[i]));
    }
    EXPECT_LT(max_diff, 2e-4);
  }
}

}  // namespace
}  // namespace expertmesh::engine
