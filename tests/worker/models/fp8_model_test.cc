// FP8 checkpoints as published (make-model --dtype fp8: e4m3 linear weights with 128 x 128
// block scales, the rest bf16) run with their weights kept in fp8 on the CPU backend, and give
// the logits of their dequantized twin: the same checkpoint with every fp8 weight replaced by
// value * scale in f32 (what a reference dequantizes to), loaded as a plain f32 model. Shapes
// with partial edge blocks, tensor-parallel slices through a block (tp 2 of widths that are not
// multiples of 2 x 128) and expert parallelism are covered through the sharded engine test.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/config/model_config.h"
#include "model/plan/parallel_config.h"
#include "model/safetensors/checkpoint.h"
#include "model/safetensors/fp8_dequant.h"
#include "model/safetensors/fp8_quantize.h"
#include "nlohmann/json.hpp"
#include "tests/util/shared_model.h"
#include "tests/util/tensor_compare.h"
#include "tests/worker/models/model_test_util.h"
#include "tools/make_model/safetensors_writer.h"
#include "worker/models/weight_loader.h"

namespace expertmesh::models {
namespace {

namespace fs = std::filesystem;
using testing::Blocks;
using testing::RunStep;
using Logits = SequenceChunk::Logits;

struct Fp8Case {
  std::string name;
  model::Architecture arch;
  make_model::ShapeOverrides overrides;
};

absl::StatusOr<std::string> MakeFp8Model(const Fp8Case& c) {
  make_model::MakeModelOptions options;
  options.arch = c.arch;
  options.size = "tiny";
  options.overrides = c.overrides;
  options.dtype = DType::kF8E4M3;
  options.seed = 11;
  options.out_dir = std::string(EXPERTMESH_BINARY_DIR) + "/test-scratch/models/fp8-" + c.name;
  return expertmesh::testing::MakeSharedModel(options);
}

// One tensor of a rewritten checkpoint: its name, dtype, shape and bytes.
struct RawTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;
};

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

// Copies the checkpoint of `dir` (config.json and tensors) into `out`, passing the tensors
// through `edit`, which may change or drop them.
absl::Status RewriteCheckpoint(const std::string& dir, const std::string& out,
                               const std::function<void(std::vector<RawTensor>&)>& edit) {
  fs::create_directories(out);
  fs::copy_file(dir + "/config.json", out + "/config.json", fs::copy_options::overwrite_existing);
  absl::StatusOr<std::unique_ptr<model::Checkpoint>> ckpt = model::Checkpoint::Open(dir);
  if (!ckpt.ok()) return ckpt.status();
  std::vector<RawTensor> tensors;
  for (const std::string& name : (*ckpt)->TensorNames()) {
    absl::StatusOr<model::TensorView> view = (*ckpt)->Get(name);
    if (!view.ok()) return view.status();
    tensors.push_back({name, view->dtype, view->shape,
                       std::vector<std::byte>(view->data.begin(), view->data.end())});
  }
  edit(tensors);
  std::vector<make_model::TensorToWrite> specs;
  for (const RawTensor& t : tensors) specs.push_back({t.name, t.dtype, t.shape});
  size_t next = 0;
  return make_model::WriteSafetensorsFile(
      out + "/model.safetensors", specs,
      [&](const make_model::TensorToWrite&) -> std::unique_ptr<make_model::TensorSource> {
        return std::make_unique<RawSource>(&tensors[next++].bytes);
      });
}

model::TensorView ViewOf(const RawTensor& t) { return {t.name, t.dtype, t.shape, t.bytes}; }

// The dequantized f32 twin of the fp8 checkpoint in `dir`, written next to it: every fp8 weight
// replaced by its value times its block scale (model::DequantizeFp8), the rest widened to f32,
// quantization_config gone.
absl::StatusOr<std::string> DequantizedTwin(const std::string& dir) {
  const std::string out = dir + "-dequantized";
  std::ifstream config_in(dir + "/config.json");
  nlohmann::json config = nlohmann::json::parse(config_in);
  const model::Fp8BlockSize block{config["quantization_config"]["weight_block_size"][0],
                                  config["quantization_config"]["weight_block_size"][1]};
  absl::Status status;
  absl::Status written = RewriteCheckpoint(dir, out, [&](std::vector<RawTensor>& tensors) {
    std::vector<RawTensor> twin;
    for (const RawTensor& t : tensors) {
      if (t.name.ends_with("_scale_inv")) continue;
      std::vector<float> v(static_cast<size_t>(ViewOf(t).NumElements()));
      if (t.dtype == DType::kF8E4M3) {
        const auto scale = std::find_if(tensors.begin(), tensors.end(), [&](const RawTensor& s) {
          return s.name == t.name + "_scale_inv";
        });
        absl::StatusOr<std::vector<float>> dq =
            model::DequantizeFp8(ViewOf(t), ViewOf(*scale), block);
        if (!dq.ok()) status = dq.status();
        if (dq.ok()) v = *std::move(dq);
      } else {
        for (size_t i = 0; i < v.size(); ++i) {
          uint16_t bits;
          if (t.dtype == DType::kBF16) {
            std::memcpy(&bits, t.bytes.data() + 2 * i, 2);
            v[i] = Bf16ToFloat(bits);
          } else {
            std::memcpy(&v[i], t.bytes.data() + 4 * i, 4);
          }
        }
      }
      const auto* raw = reinterpret_cast<const std::byte*>(v.data());
      twin.push_back({t.name, DType::kF32, t.shape,
                      std::vector<std::byte>(raw, raw + v.size() * sizeof(float))});
    }
    tensors = std::move(twin);
  });
  if (!written.ok()) return written;
  if (!status.ok()) return status;
  config.erase("quantization_config");
  config["torch_dtype"] = "float32";
  std::ofstream(out + "/config.json") << config.dump(2);
  return out;
}

// The logits of 11 tokens through `m`: a prefill of 8, then three single-token decode steps,
// one tensor per step (`logits`: the last row of each step, or all of them).
absl::StatusOr<std::vector<kernels::Tensor>> PrefillThenDecodeLogits(Model& m,
                                                                     kernels::Backend& backend,
                                                                     Logits logits) {
  std::vector<int32_t> tokens;
  for (int i = 0; i < 11; ++i) {
    tokens.push_back(static_cast<int32_t>((i * 7919 + 13) % m.config().vocab_size));
  }
  absl::StatusOr<KvCacheTensors> kv = AllocateKvCache(backend, m.kv_cache_spec(), 16, 4);
  if (!kv.ok()) return kv.status();
  const std::vector<int32_t> table = Blocks(0, 4);
  std::vector<kernels::Tensor> steps;
  for (size_t start = 0; start < tokens.size();) {
    const size_t len = start == 0 ? 8 : 1;
    const std::vector<SequenceChunk> chunk = {{.tokens = std::span(tokens).subspan(start, len),
                                               .start_pos = static_cast<int64_t>(start),
                                               .block_table = table,
                                               .logits = logits}};
    absl::StatusOr<kernels::Tensor> step = RunStep(m, *kv, chunk);
    if (!step.ok()) return step.status();
    steps.push_back(*std::move(step));
    start += len;
  }
  return steps;
}

class Fp8ModelTest : public ::testing::TestWithParam<Fp8Case> {
 protected:
  void SetUp() override {
    auto backend = kernels::cpu::CpuBackend::Create({.num_threads = 2});
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = std::move(*backend);
    absl::StatusOr<std::string> dir = MakeFp8Model(GetParam());
    ASSERT_TRUE(dir.ok()) << dir.status();
    fp8_dir_ = *dir;
    absl::StatusOr<std::string> twin = DequantizedTwin(fp8_dir_);
    ASSERT_TRUE(twin.ok()) << twin.status();
    twin_dir_ = *twin;
  }

  std::unique_ptr<Model> Load(const std::string& dir) {
    auto m = LoadModel(dir, backend_.get(), {.compute_dtype = DType::kF32});
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? std::move(*m) : nullptr;
  }

  std::unique_ptr<kernels::cpu::CpuBackend> backend_;
  std::string fp8_dir_, twin_dir_;
};

TEST_P(Fp8ModelTest, LogitsMatchTheDequantizedTwinOverPrefillAndDecode) {
  std::unique_ptr<Model> fp8 = Load(fp8_dir_), twin = Load(twin_dir_);
  ASSERT_NE(fp8, nullptr);
  ASSERT_NE(twin, nullptr);
  // The fp8 model holds fewer weight bytes: its linear weights are one byte each.
  EXPECT_LT(fp8->weight_bytes(), twin->weight_bytes());
  auto a = PrefillThenDecodeLogits(*fp8, *backend_, Logits::kLast);
  auto b = PrefillThenDecodeLogits(*twin, *backend_, Logits::kLast);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  const expertmesh::testing::Tolerance tol{2e-4, 2e-3, 0.99999};
  for (size_t i = 0; i < a->size(); ++i) {
    EXPECT_TRUE(
        expertmesh::testing::TensorsClose((*a)[i], expertmesh::testing::ToDoubles((*b)[i]), tol))
        << "step " << i;
  }
}

// Bad fp8 checkpoints are refused at load with an error naming the tensor.
TEST(Fp8CheckpointErrors, EachDefectIsNamed) {
  absl::StatusOr<std::string> dir =
      MakeFp8Model({"qwen3_moe_errors", model::Architecture::kQwen3Moe, {}});
  ASSERT_TRUE(dir.ok()) << dir.status();
  auto backend = kernels::cpu::CpuBackend::Create({.num_threads = 1});
  ASSERT_TRUE(backend.ok());
  const std::string target = "model.layers.0.self_attn.q_proj.weight";
  const struct {
    std::string name;
    std::function<void(std::vector<RawTensor>&)> edit;
    std::string expect;
  } cases[] = {
      {"missing_scale",
       [&](std::vector<RawTensor>& ts) {
         std::erase_if(ts, [&](const RawTensor& t) { return t.name == target + "_scale_inv"; });
       },
       "_scale_inv is missing"},
      {"scale_shape",
       [&](std::vector<RawTensor>& ts) {
         for (RawTensor& t : ts) {
           if (t.name == target + "_scale_inv") {
             t.shape = {1, 1, 1};
             t.bytes.resize(4);
           }
         }
       },
       "need [1, 1]"},
      {"nan_scale",
       [&](std::vector<RawTensor>& ts) {
         for (RawTensor& t : ts) {
           if (t.name == target + "_scale_inv") {
             const float nan = std::nanf("");
             std::memcpy(t.bytes.data(), &nan, 4);
           }
         }
       },
       "is nan"},
      {"scale_dtype",
       [&](std::vector<RawTensor>& ts) {
         for (RawTensor& t : ts) {
           if (t.name == target + "_scale_inv") t.dtype = DType::kI32;
         }
       },
       "dtype I32"},
  };
  for (const auto& c : cases) {
    const std::string out = *dir + "-bad-" + c.name;
    ASSERT_TRUE(RewriteCheckpoint(*dir, out, c.edit).ok()) << c.name;
    auto m = LoadModel(out, backend->get(), {.compute_dtype = DType::kF32});
    ASSERT_FALSE(m.ok()) << c.name;
    EXPECT_NE(m.status().message().find(target), std::string_view::npos)
        << c.name << ": " << m.status();
    EXPECT_NE(m.status().message().find(c.expect), std::string_view::npos)
        << c.name << ": " << m.status();
  }
  // An unsupported format or block shape in the config is refused before any tensor is read.
  for (const auto& [key, value, expect] :
       {std::tuple{"fmt", nlohmann::json("e5m2"), "e5m2"},
        std::tuple{"weight_block_size", nlohmann::json({128, 0}), "weight_block_size"}}) {
    const std::string out = *dir + "-bad-config";
    ASSERT_TRUE(RewriteCheckpoint(*dir, out, [](std::vector<RawTensor>&) {}).ok());
    std::ifstream in(out + "/config.json");
    nlohmann::json config = nlohmann::json::parse(in);
    config["quantization_config"][key] = value;
    std::ofstream(out + "/config.json") << config.dump(2);
    auto m = LoadModel(out, backend->get(), {.compute_dtype = DType::kF32});
    ASSERT_FALSE(m.ok()) << key;
    EXPECT_NE(m.status().message().find(expect), std::string_view::npos) << m.status();
  }
}

// --quantize fp8 and make-model --dtype fp8 share one quantizer: a bf16 checkpoint quantized at
// load holds exactly the bytes and scales of the fp8 checkpoint made from the same values, so
// the logits are bit-identical. (DeepSeek's absorbed MLA projections are derived from the
// unquantized kv_b_proj at load, so there the two differ slightly; not compared here.)
TEST(Fp8QuantizeAtLoad, EqualsTheFp8CheckpointOfTheSameValues) {
  for (model::Architecture arch : {model::Architecture::kQwen3Moe, model::Architecture::kLlama}) {
    make_model::MakeModelOptions options;
    options.arch = arch;
    options.size = "tiny";
    options.overrides.hidden_size = 320;
    options.overrides.moe_intermediate_size = 192;
    options.overrides.intermediate_size = 384;
    options.seed = 23;
    const std::string base = std::string(EXPERTMESH_BINARY_DIR) + "/test-scratch/models/quant-" +
                             std::string(model::ArchitectureName(arch));
    options.out_dir = base + "-bf16";
    absl::StatusOr<std::string> bf16 = expertmesh::testing::MakeSharedModel(options);
    options.dtype = DType::kF8E4M3;
    options.out_dir = base + "-fp8";
    absl::StatusOr<std::string> fp8 = expertmesh::testing::MakeSharedModel(options);
    ASSERT_TRUE(bf16.ok() && fp8.ok()) << bf16.status() << fp8.status();

    auto backend = kernels::cpu::CpuBackend::Create({.num_threads = 2});
    ASSERT_TRUE(backend.ok());
    auto quantized =
        LoadModel(*bf16, backend->get(), {.compute_dtype = DType::kF32, .quantize_fp8 = true});
    auto published = LoadModel(*fp8, backend->get(), {.compute_dtype = DType::kF32});
    auto plain = LoadModel(*bf16, backend->get(), {.compute_dtype = DType::kF32});
    ASSERT_TRUE(quantized.ok()) << quantized.status();
    ASSERT_TRUE(published.ok()) << published.status();
    ASSERT_TRUE(plain.ok()) << plain.status();
    EXPECT_EQ((*quantized)->weight_bytes(), (*published)->weight_bytes());
    EXPECT_LT((*quantized)->weight_bytes(), (*plain)->weight_bytes());

    std::vector<int32_t> tokens;
    for (int i = 0; i < 9; ++i) tokens.push_back(static_cast<int32_t>(3 + i * 31));
    const std::vector<int32_t> table = Blocks(0, 4);
    const std::vector<SequenceChunk> chunk = {
        {.tokens = tokens, .start_pos = 0, .block_table = table, .logits = Logits::kLast}};
    auto kv_a = AllocateKvCache(**backend, (*quantized)->kv_cache_spec(), 8, 4);
    auto kv_b = AllocateKvCache(**backend, (*published)->kv_cache_spec(), 8, 4);
    ASSERT_TRUE(kv_a.ok() && kv_b.ok());
    auto a = RunStep(**quantized, *kv_a, chunk);
    auto b = RunStep(**published, *kv_b, chunk);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_TRUE(expertmesh::testing::TensorsEqual(*a, *b)) << model::ArchitectureName(arch);
  }
}

make_model::ShapeOverrides Wide() {
  // Widths with whole 128-blocks and partial ones: hidden 320 = 2 x 128 + 64.
  make_model::ShapeOverrides o;
  o.hidden_size = 320;
  o.moe_intermediate_size = 192;
  o.intermediate_size = 384;
  return o;
}

// The twin of DequantizedTwin(dir) whose lm_head holds what --quantize-lm-head fp8 makes of it:
// the table's values through model::QuantizeFp8Blocks (128 x 128) and back. A tied table is
// untied: the embedding keeps its values, lm_head gets the quantized copy.
absl::StatusOr<std::string> LmHeadQuantizedTwin(const std::string& twin_dir) {
  const std::string out = twin_dir + "-fp8-lm-head";
  std::ifstream config_in(twin_dir + "/config.json");
  nlohmann::json config = nlohmann::json::parse(config_in);
  const bool tied = config.value("tie_word_embeddings", false);
  absl::Status status;
  absl::Status written = RewriteCheckpoint(twin_dir, out, [&](std::vector<RawTensor>& tensors) {
    const std::string source = tied ? "model.embed_tokens.weight" : "lm_head.weight";
    auto table = std::find_if(tensors.begin(), tensors.end(),
                              [&](const RawTensor& t) { return t.name == source; });
    if (table == tensors.end() || table->dtype != DType::kF32) {
      status = absl::NotFoundError("no f32 " + source);
      return;
    }
    const int64_t rows = table->shape[0], cols = table->shape[1];
    std::vector<float> values(static_cast<size_t>(rows * cols));
    std::memcpy(values.data(), table->bytes.data(), values.size() * sizeof(float));
    const model::Fp8BlockSize block;
    std::vector<std::byte> q(values.size());
    std::vector<float> scales(static_cast<size_t>(((rows + 127) / 128) * ((cols + 127) / 128)));
    status =
        model::QuantizeFp8Blocks(values, rows, cols, block,
                                 std::span(reinterpret_cast<uint8_t*>(q.data()), q.size()), scales);
    if (!status.ok()) return;
    const auto* scale_bytes = reinterpret_cast<const std::byte*>(scales.data());
    const RawTensor q_tensor{"q", DType::kF8E4M3, {rows, cols}, q};
    const RawTensor s_tensor{
        "s",
        DType::kF32,
        {(rows + 127) / 128, (cols + 127) / 128},
        std::vector<std::byte>(scale_bytes, scale_bytes + scales.size() * sizeof(float))};
    absl::StatusOr<std::vector<float>> dq =
        model::DequantizeFp8(ViewOf(q_tensor), ViewOf(s_tensor), block);
    if (!dq.ok()) {
      status = dq.status();
      return;
    }
    const auto* raw = reinterpret_cast<const std::byte*>(dq->data());
    RawTensor lm_head{"lm_head.weight",
                      DType::kF32,
                      {rows, cols},
                      std::vector<std::byte>(raw, raw + dq->size() * sizeof(float))};
    if (tied) {
      tensors.push_back(std::move(lm_head));
    } else {
      *table = std::move(lm_head);
    }
  });
  if (!written.ok()) return written;
  if (!status.ok()) return status;
  config["tie_word_embeddings"] = false;
  std::ofstream(out + "/config.json") << config.dump(2);
  return out;
}

// --quantize-lm-head fp8 on an fp8 checkpoint: lm_head (untied: qwen3_moe; tied to the
// embedding: llama, whose table stays as stored) becomes 128 x 128-block fp8, every other weight
// as before, so the logits are those of the dequantized twin with that lm_head, within the fp8
// model's bounds; the loaded bytes shrink (untied) or grow by the fp8 copy (tied), and the bytes
// a decoded token reads shrink in both. Vocab 2112 and hidden 320 leave partial blocks both ways.
TEST(Fp8LmHead, LogitsMatchTheTwinWithTheQuantizedLmHead) {
  auto backend = kernels::cpu::CpuBackend::Create({.num_threads = 2});
  ASSERT_TRUE(backend.ok()) << backend.status();
  for (const Fp8Case& c : {Fp8Case{"qwen3_moe_wide", model::Architecture::kQwen3Moe, Wide()},
                           Fp8Case{"llama", model::Architecture::kLlama, Wide()}}) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<std::string> fp8_dir = MakeFp8Model(c);
    ASSERT_TRUE(fp8_dir.ok()) << fp8_dir.status();
    absl::StatusOr<std::string> twin_dir = DequantizedTwin(*fp8_dir);
    ASSERT_TRUE(twin_dir.ok()) << twin_dir.status();
    absl::StatusOr<std::string> lm_twin_dir = LmHeadQuantizedTwin(*twin_dir);
    ASSERT_TRUE(lm_twin_dir.ok()) << lm_twin_dir.status();
    auto quantized = LoadModel(*fp8_dir, backend->get(),
                               {.compute_dtype = DType::kF32, .quantize_lm_head_fp8 = true});
    auto published = LoadModel(*fp8_dir, backend->get(), {.compute_dtype = DType::kF32});
    auto twin = LoadModel(*lm_twin_dir, backend->get(), {.compute_dtype = DType::kF32});
    ASSERT_TRUE(quantized.ok()) << quantized.status();
    ASSERT_TRUE(published.ok() && twin.ok());

    const model::ModelConfig& config = (*published)->config();
    const int64_t table = config.vocab_size * config.hidden_size;
    const int64_t fp8_bytes =
        table + ((config.vocab_size + 127) / 128) * ((config.hidden_size + 127) / 128) * 4;
    const int64_t loaded_change = static_cast<int64_t>((*quantized)->weight_bytes()) -
                                  static_cast<int64_t>((*published)->weight_bytes());
    EXPECT_EQ(loaded_change, config.tie_word_embeddings ? fp8_bytes : fp8_bytes - 2 * table);
    EXPECT_EQ(static_cast<int64_t>((*published)->active_weight_bytes_per_token()) -
                  static_cast<int64_t>((*quantized)->active_weight_bytes_per_token()),
              2 * table - fp8_bytes);

    auto a = PrefillThenDecodeLogits(**quantized, **backend, Logits::kAll);
    auto b = PrefillThenDecodeLogits(**twin, **backend, Logits::kAll);
    auto p = PrefillThenDecodeLogits(**published, **backend, Logits::kAll);
    ASSERT_TRUE(a.ok() && b.ok() && p.ok()) << a.status() << b.status() << p.status();
    const expertmesh::testing::Tolerance tol{2e-4, 2e-3, 0.99999};
    double moved = 0;  // how far the fp8 lm_head moves the logits from the published model's
    for (size_t step = 0; step < a->size(); ++step) {
      const kernels::Tensor& got = (*a)[step];
      EXPECT_TRUE(
          expertmesh::testing::TensorsClose(got, expertmesh::testing::ToDoubles((*b)[step]), tol))
          << "step " << step;
      for (int64_t i = 0; i < got.numel(); ++i) {
        moved = std::max(moved, std::abs(static_cast<double>(got.data<float>()[i]) -
                                         (*p)[step].data<float>()[i]));
      }
    }
    // The test would pass vacuously if lm_head stayed bf16: fp8's 3 mantissa bits move logits
    // far past the bound above.
    EXPECT_GT(moved, 10 * tol.atol);
  }
}

// Each rank of a vocab-parallel group quantizes its rows in the blocks of the whole table, so
// its rows dequantize to exactly the values of one rank's: slices that start on a block row
// (tp 1, and 1024 of 2112) and inside one (tp 2: 1056; tp 4: 528, 1584), each padded with zero
// rows to the per-rank count as the vocab-parallel lm_head is. Without a backend that multiplies
// fp8, the error names the tensor.
TEST(Fp8LmHead, EverySliceDequantizesToTheWholeTablesRows) {
  absl::StatusOr<std::string> dir =
      MakeFp8Model({"qwen3_moe_wide", model::Architecture::kQwen3Moe, Wide()});
  ASSERT_TRUE(dir.ok()) << dir.status();
  absl::StatusOr<model::ModelConfig> config = model::LoadModelConfig(*dir);
  ASSERT_TRUE(config.ok()) << config.status();
  const int64_t vocab = config->vocab_size, hidden = config->hidden_size;
  const std::vector<int64_t> shape = {vocab, hidden};
  auto backend = kernels::cpu::CpuBackend::Create({.num_threads = 1});
  ASSERT_TRUE(backend.ok());
  absl::StatusOr<WeightLoader> loader = WeightLoader::Open(*dir, *config);
  ASSERT_TRUE(loader.ok()) << loader.status();

  absl::StatusOr<kernels::Tensor> no_backend =
      loader->GetRowsQuantizedToFp8("lm_head.weight", shape, 0, vocab, vocab);
  ASSERT_FALSE(no_backend.ok());
  EXPECT_EQ(no_backend.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(no_backend.status().message().find("lm_head.weight"), std::string::npos);

  loader->set_backend(backend->get());
  // The values a tensor with block scales stands for, row by row.
  auto dequantize = [](const kernels::Tensor& t) -> std::vector<float> {
    const kernels::BlockScales& s = *t.block_scales();
    const auto* q = static_cast<const std::byte*>(t.raw_data());
    const auto* grid = static_cast<const std::byte*>(s.scales->raw_data());
    absl::StatusOr<std::vector<float>> v = model::DequantizeFp8(
        {"q", DType::kF8E4M3, std::vector<int64_t>(t.shape().begin(), t.shape().end()),
         std::span(q, t.nbytes())},
        {"s", DType::kF32, std::vector<int64_t>(s.scales->shape().begin(), s.scales->shape().end()),
         std::span(grid, s.scales->nbytes())},
        {s.block_rows, s.block_cols});
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : std::vector<float>();
  };
  absl::StatusOr<kernels::Tensor> whole =
      loader->GetRowsQuantizedToFp8("lm_head.weight", shape, 0, vocab, vocab);
  ASSERT_TRUE(whole.ok()) << whole.status();
  ASSERT_EQ(whole->dtype(), DType::kF8E4M3);
  EXPECT_EQ(whole->block_scales()->block_rows, 128);
  const std::vector<float> reference = dequantize(*whole);
  ASSERT_EQ(reference.size(), static_cast<size_t>(vocab * hidden));

  for (int world : {2, 4}) {
    for (int rank = 0; rank < world; ++rank) {
      const model::ParallelConfig shard{.tp = world, .rank = rank};
      const model::IndexRange rows = shard.VocabRows(vocab);
      const int64_t per = shard.VocabRowsPerRank(vocab);
      SCOPED_TRACE(absl::StrCat("rows ", rows.begin, " + ", rows.count, " of ", per));
      absl::StatusOr<kernels::Tensor> slice =
          loader->GetRowsQuantizedToFp8("lm_head.weight", shape, rows.begin, rows.count, per);
      ASSERT_TRUE(slice.ok()) << slice.status();
      EXPECT_EQ(slice->block_scales()->block_rows, rows.begin % 128 == 0 ? 128 : 1);
      const std::vector<float> got = dequantize(*slice);
      ASSERT_EQ(got.size(), static_cast<size_t>(per * hidden));
      for (int64_t i = 0; i < per * hidden; ++i) {
        const float want = i < rows.count * hidden ? reference[rows.begin * hidden + i] : 0.0f;
        ASSERT_EQ(got[i], want) << "element " << i;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Archs, Fp8ModelTest,
    ::testing::Values(Fp8Case{"qwen3_moe", model::Architecture::kQwen3Moe, {}},
                      Fp8Case{"qwen3_moe_wide", model::Architecture::kQwen3Moe, Wide()},
                      Fp8Case{"deepseek_v3", model::Architecture::kDeepseekV3, {}},
                      Fp8Case{"deepseek_v3_wide", model::Architecture::kDeepseekV3, Wide()},
                      Fp8Case{"llama", model::Architecture::kLlama, Wide()}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace expertmesh::models
