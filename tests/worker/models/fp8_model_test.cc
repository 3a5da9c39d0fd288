// FP8 checkpoints as published (make-model --dtype fp8: e4m3 linear weights with 128 x 128
// block scales, the rest bf16) run with their weights kept in fp8 on the CPU backend, and give
// the logits of their dequantized twin: the same checkpoint with every fp8 weight replaced by
// value * scale in f32 (what a reference dequantizes to), loaded as a plain f32 model. Shapes
// with partial edge blocks, tensor-parallel slices through a block (tp 2 of widths that are not
// multiples of 2 x 128) and expert parallelism are covered through the sharded engine test.
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/safetensors/checkpoint.h"
#include "model/safetensors/fp8_dequant.h"
#include "nlohmann/json.hpp"
#include "tests/util/shared_model.h"
#include "tests/util/tensor_compare.h"
#include "tests/worker/models/model_test_util.h"
#include "tools/make_model/safetensors_writer.h"

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

// Copies `bytes` out piece by piece (safetensors_writer's source interface).
class BytesSource : public make_model::TensorSource {
 public:
  explicit BytesSource(std::vector<float> values) : values_(std::move(values)) {}
  void Fill(std::span<std::byte> out) override {
    std::memcpy(out.data(), reinterpret_cast<const std::byte*>(values_.data()) + offset_,
                out.size());
    offset_ += out.size();
  }

 private:
  std::vector<float> values_;
  size_t offset_ = 0;
};

// The dequantized f32 twin of the fp8 checkpoint in `dir`, written next to it.
absl::StatusOr<std::string> DequantizedTwin(const std::string& dir) {
  const std::string out = dir + "-dequantized";
  fs::create_directories(out);
  absl::StatusOr<std::unique_ptr<model::Checkpoint>> ckpt = model::Checkpoint::Open(dir);
  if (!ckpt.ok()) return ckpt.status();
  std::ifstream config_in(dir + "/config.json");
  nlohmann::json config = nlohmann::json::parse(config_in);
  const model::Fp8BlockSize block{config["quantization_config"]["weight_block_size"][0],
                                  config["quantization_config"]["weight_block_size"][1]};
  config.erase("quantization_config");
  config["torch_dtype"] = "float32";
  std::ofstream(out + "/config.json") << config.dump(2);

  std::vector<make_model::TensorToWrite> tensors;
  std::vector<std::vector<float>> values;
  for (const std::string& name : (*ckpt)->TensorNames()) {
    if (name.ends_with("_scale_inv")) continue;
    absl::StatusOr<model::TensorView> view = (*ckpt)->Get(name);
    if (!view.ok()) return view.status();
    std::vector<float> v(static_cast<size_t>(view->NumElements()));
    if (view->dtype == DType::kF8E4M3) {
      absl::StatusOr<model::TensorView> scale = (*ckpt)->Get(name + "_scale_inv");
      if (!scale.ok()) return scale.status();
      absl::StatusOr<std::vector<float>> dq = model::DequantizeFp8(*view, *scale, block);
      if (!dq.ok()) return dq.status();
      v = *std::move(dq);
    } else {
      for (size_t i = 0; i < v.size(); ++i) {
        uint16_t bits;
        if (view->dtype == DType::kBF16) {
          std::memcpy(&bits, view->data.data() + 2 * i, 2);
          v[i] = Bf16ToFloat(bits);
        } else {
          std::memcpy(&v[i], view->data.data() + 4 * i, 4);
        }
      }
    }
    tensors.push_back({name, DType::kF32, view->shape});
    values.push_back(std::move(v));
  }
  size_t next = 0;
  absl::Status written = make_model::WriteSafetensorsFile(
      out + "/model.safetensors", tensors,
      [&](const make_model::TensorToWrite&) -> std::unique_ptr<make_model::TensorSource> {
        return std::make_unique<BytesSource>(std::move(values[next++]));
      });
  if (!written.ok()) return written;
  return out;
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
  const int64_t vocab = fp8->config().vocab_size;
  std::vector<int32_t> tokens;
  for (int i = 0; i < 11; ++i) tokens.push_back(static_cast<int32_t>((i * 7919 + 13) % vocab));
  auto kv8 = AllocateKvCache(*backend_, fp8->kv_cache_spec(), 16, 4);
  auto kv32 = AllocateKvCache(*backend_, twin->kv_cache_spec(), 16, 4);
  ASSERT_TRUE(kv8.ok() && kv32.ok());
  const std::vector<int32_t> table = Blocks(0, 4);
  const expertmesh::testing::Tolerance tol{2e-4, 2e-3, 0.99999};
  // A prefill of 8 tokens, then three single-token decode steps.
  for (size_t start = 0; start < tokens.size();) {
    const size_t len = start == 0 ? 8 : 1;
    const std::vector<SequenceChunk> chunk = {{.tokens = std::span(tokens).subspan(start, len),
                                               .start_pos = static_cast<int64_t>(start),
                                               .block_table = table,
                                               .logits = Logits::kLast}};
    auto a = RunStep(*fp8, *kv8, chunk);
    auto b = RunStep(*twin, *kv32, chunk);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_TRUE(expertmesh::testing::TensorsClose(*a, expertmesh::testing::ToDoubles(*b), tol))
        << "step at position " << start;
    start += len;
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
