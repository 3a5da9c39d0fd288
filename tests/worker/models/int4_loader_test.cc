// The weight loader on int4 checkpoints as published (compressed-tensors pack-quantized, GPTQ
// v1 / v2, symmetric and asymmetric, act-order) and per-channel fp8: tiny hand-packed
// checkpoints with known values, loaded as kQ4 tensors (a backend that takes q4 weights) whose
// every value, read through kernels::Q4Value and the BlockScales, dequantizes exactly to the
// value packed; tensor-parallel slices through a group, fused gate | up, values widened for a
// backend without q4 weights and for weights derived at load; a quantized lm_head whole and as
// a vocab-parallel rank's padded rows; and each malformed tensor refused with an error naming
// it.
#include <cmath>
#include <functional>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "common/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/q4_layout.h"
#include "model/config/model_config.h"
#include "model/safetensors/int4_quantize.h"
#include "tests/model/safetensors/safetensors_writer.h"
#include "tests/util/fake_device_backend.h"
#include "tests/util/shared_model.h"
#include "tests/util/tensor_compare.h"
#include "tests/worker/models/model_test_util.h"
#include "worker/models/model.h"
#include "worker/models/weight_loader.h"

namespace expertmesh::models {
namespace {

using kernels::Tensor;
using model::testing::Bytes;
using model::testing::TestTensor;
using ::testing::HasSubstr;
using Json = nlohmann::json;

// A Llama with hidden 64, intermediate 192: down_proj's 192 columns split over tp 2 at column
// 96, in the middle of the second group of 64.
constexpr int64_t kHidden = 64, kInter = 192, kGroup = 64;

Json BaseConfig() {
  return Json{{"architectures", {"LlamaForCausalLM"}},
              {"vocab_size", 64},
              {"hidden_size", kHidden},
              {"intermediate_size", kInter},
              {"num_hidden_layers", 1},
              {"num_attention_heads", 2},
              {"num_key_value_heads", 2},
              {"head_dim", 32},
              {"max_position_embeddings", 64},
              {"rms_norm_eps", 1e-6},
              {"torch_dtype", "bfloat16"}};
}

Json CtQuantization() {
  return Json::parse(R"({"quant_method": "compressed-tensors", "format": "pack-quantized",
    "ignore": ["lm_head"], "config_groups": {"group_0": {"targets": ["Linear"],
    "weights": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 64,
                "symmetric": true, "dynamic": false}}}})");
}

Json GptqQuantization(bool sym, bool desc_act, const std::string& format) {
  return Json{{"quant_method", "gptq"}, {"bits", 4},
              {"group_size", kGroup},   {"sym", sym},
              {"desc_act", desc_act},   {"checkpoint_format", format}};
}

// The int4 values, zero points and scales of one Linear, and what it dequantizes to.
struct Int4Weight {
  int64_t out = 0, in = 0;
  std::vector<uint8_t> q;      // [out, in] 0..15
  std::vector<float> scale;    // [out, in / group]
  std::vector<uint8_t> zero;   // [out, in / group] 1..15
  std::vector<int32_t> g_idx;  // [in]: the group of each input feature

  float Value(int64_t r, int64_t c) const {
    const int64_t g = g_idx[c];
    const int64_t k = r * (in / kGroup) + g;
    return (static_cast<float>(q[r * in + c]) - zero[k]) * scale[k];
  }
};

// Distinct values per module (`seed`); scales exact in bf16 and f16.
Int4Weight MakeWeight(int64_t out, int64_t in, int seed, bool symmetric, bool act_order) {
  Int4Weight w;
  w.out = out;
  w.in = in;
  const int64_t groups = in / kGroup;
  for (int64_t r = 0; r < out; ++r) {
    for (int64_t c = 0; c < in; ++c) {
      w.q.push_back(static_cast<uint8_t>((r * 7 + c * 3 + seed * 5) % 16));
    }
    for (int64_t g = 0; g < groups; ++g) {
      w.scale.push_back(0.5f + 0.25f * static_cast<float>((r + g + seed) % 4));
      // 1..15: AutoGPTQ's v1 format stores zero - 1 and cannot hold a zero point of 0 (it
      // reads back as 16, as vLLM's kernels and transformers read it too).
      w.zero.push_back(symmetric ? 8 : static_cast<uint8_t>((r + 2 * g + seed) % 15 + 1));
    }
  }
  for (int64_t c = 0; c < in; ++c) w.g_idx.push_back(static_cast<int32_t>(c / kGroup));
  if (act_order) {
    // Each group keeps kGroup features, spread over the row: feature c goes to group
    // (c * 5 + 1) % groups when that balances (5 coprime with the group count).
    for (int64_t c = 0; c < in; ++c) w.g_idx[c] = static_cast<int32_t>((c * 5 + 1) % groups);
  }
  return w;
}

std::string Bf16Bytes(const std::vector<float>& v) {
  std::vector<uint16_t> bits;
  for (float x : v) bits.push_back(FloatToBf16(x));
  return Bytes(bits);
}

std::string F16Bytes(const std::vector<float>& v) {
  std::vector<uint16_t> bits;
  for (float x : v) bits.push_back(FloatToF16(x));
  return Bytes(bits);
}

// compressed-tensors pack-quantized: weight_packed [out, in / 8], weight_scale, weight_shape.
void AddCt(const std::string& module, const Int4Weight& w, std::vector<TestTensor>& out) {
  std::vector<int32_t> packed(static_cast<size_t>(w.out * w.in / 8), 0);
  for (int64_t r = 0; r < w.out; ++r) {
    for (int64_t c = 0; c < w.in; ++c) {
      packed[r * (w.in / 8) + c / 8] |= static_cast<int32_t>(w.q[r * w.in + c]) << (4 * (c % 8));
    }
  }
  out.push_back({module + ".weight_packed", DType::kI32, {w.out, w.in / 8}, Bytes(packed)});
  out.push_back(
      {module + ".weight_scale", DType::kBF16, {w.out, w.in / kGroup}, Bf16Bytes(w.scale)});
  out.push_back(
      {module + ".weight_shape", DType::kI64, {2}, Bytes(std::vector<int64_t>{w.out, w.in})});
}

// AutoGPTQ: qweight [in / 8, out], qzeros [groups, out / 8] (zero - 1 in v1), scales
// [groups, out] f16, g_idx [in], and a bias of zeros.
void AddGptq(const std::string& module, const Int4Weight& w, bool v1,
             std::vector<TestTensor>& out) {
  const int64_t groups = w.in / kGroup;
  std::vector<int32_t> qweight(static_cast<size_t>(w.in / 8 * w.out), 0);
  for (int64_t r = 0; r < w.out; ++r) {
    for (int64_t c = 0; c < w.in; ++c) {
      qweight[(c / 8) * w.out + r] |= static_cast<int32_t>(w.q[r * w.in + c]) << (4 * (c % 8));
    }
  }
  std::vector<int32_t> qzeros(static_cast<size_t>(groups * w.out / 8), 0);
  std::vector<float> scales(static_cast<size_t>(groups * w.out));
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t r = 0; r < w.out; ++r) {
      const int z = (w.zero[r * groups + g] - (v1 ? 1 : 0)) & 0xf;
      qzeros[g * (w.out / 8) + r / 8] |= z << (4 * (r % 8));
      scales[g * w.out + r] = w.scale[r * groups + g];
    }
  }
  out.push_back({module + ".qweight", DType::kI32, {w.in / 8, w.out}, Bytes(qweight)});
  out.push_back({module + ".qzeros", DType::kI32, {groups, w.out / 8}, Bytes(qzeros)});
  out.push_back({module + ".scales", DType::kF16, {groups, w.out}, F16Bytes(scales)});
  out.push_back({module + ".g_idx", DType::kI32, {w.in}, Bytes(w.g_idx)});
  out.push_back({module + ".bias",
                 DType::kF16,
                 {w.out},
                 F16Bytes(std::vector<float>(static_cast<size_t>(w.out), 0.0f))});
}

// Every value of `t` (kQ4 with block scales) against rows [r0, ...) and columns [c0, ...) of
// `w`, through the column order where the columns were sorted.
void ExpectDequantizes(const Tensor& t, const Int4Weight& w, int64_t r0, int64_t c0,
                       const std::string& what) {
  ASSERT_EQ(t.dtype(), DType::kQ4) << what;
  const kernels::BlockScales* s = t.block_scales();
  ASSERT_NE(s, nullptr) << what;
  ASSERT_EQ(s->block_rows, 1) << what;
  ASSERT_EQ(s->block_cols, kGroup) << what;
  const int64_t rows = t.dim(0), cols = t.dim(1), grid_cols = s->scales->dim(1);
  const auto* data = static_cast<const uint8_t*>(t.raw_data());
  const float* scales = s->scales->data<float>();
  const float* zeros = s->zero_points ? s->zero_points->data<float>() : nullptr;
  const int32_t* order = s->column_order ? s->column_order->data<int32_t>() : nullptr;
  int mismatches = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t k =
          (r + s->row_offset) / s->block_rows * grid_cols + (c + s->col_offset) / s->block_cols;
      const float zero = zeros ? zeros[k] : kernels::kQ4SymmetricZero;
      const float got = (kernels::Q4Value(data + r * cols / 2, cols, c) - zero) * scales[k];
      const int64_t feature = order ? order[c] : c0 + c;
      const float want = w.Value(r0 + r, feature);
      if (got != want && ++mismatches <= 5) {
        ADD_FAILURE() << what << ": [" << r << ", " << c << "] is " << got << ", want " << want;
      }
    }
  }
  EXPECT_EQ(mismatches, 0) << what;
}

class Int4LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto device = expertmesh::testing::FakeDeviceBackend::Create();
    ASSERT_TRUE(device.ok()) << device.status();
    device_ = std::move(*device);
    device_->set_q4_weights(true);
  }

  // Writes `tensors` and `config` to a fresh directory and opens a loader for tp rank `rank`
  // of `tp`, on the q4 backend (or none: host tensors, int4 widened).
  absl::StatusOr<WeightLoader> Open(const std::string& name, const Json& config,
                                    const std::vector<TestTensor>& tensors, bool q4 = true,
                                    int tp = 1, int rank = 0) {
    const std::string dir = model::testing::ScratchDir("int4_loader_" + name);
    model::testing::WriteFile(dir + "/model.safetensors", model::testing::BuildFile(tensors));
    model::testing::WriteFile(dir + "/config.json", config.dump());
    ASSIGN_OR_RETURN(model::ModelConfig c, model::LoadModelConfig(dir));
    ASSIGN_OR_RETURN(WeightLoader w, WeightLoader::Open(dir, c));
    w.set_shard({.tp = tp, .ep = 1, .rank = rank});
    if (q4) w.set_backend(device_.get());
    return w;
  }

  std::unique_ptr<expertmesh::testing::FakeDeviceBackend> device_;
};

const std::string kMlp = "model.layers.0.mlp.";

TEST_F(Int4LoaderTest, CompressedTensorsWholeSlicedAndFused) {
  Json config = BaseConfig();
  config["quantization_config"] = CtQuantization();
  const Int4Weight gate = MakeWeight(kInter, kHidden, 1, true, false);
  const Int4Weight up = MakeWeight(kInter, kHidden, 2, true, false);
  const Int4Weight down = MakeWeight(kHidden, kInter, 3, true, false);
  std::vector<TestTensor> tensors;
  AddCt(kMlp + "gate_proj", gate, tensors);
  AddCt(kMlp + "up_proj", up, tensors);
  AddCt(kMlp + "down_proj", down, tensors);
  auto w = Open("ct", config, tensors);
  ASSERT_TRUE(w.ok()) << w.status();

  auto whole = w->Get(kMlp + "down_proj.weight", {kHidden, kInter});
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->nbytes(), static_cast<size_t>(kHidden * kInter / 2));
  EXPECT_EQ(whole->block_scales()->zero_points, nullptr);  // symmetric: zero 8
  ExpectDequantizes(*whole, down, 0, 0, "whole down_proj");

  // tp rank 1 of 2: down_proj's columns [96, 192) start 32 columns into the second group.
  auto cols = w->GetCols(kMlp + "down_proj.weight", {kHidden, kInter}, 96, 96);
  ASSERT_TRUE(cols.ok()) << cols.status();
  EXPECT_EQ(cols->block_scales()->col_offset, 32);
  EXPECT_EQ(cols->block_scales()->scales->dim(1), 2);
  ExpectDequantizes(*cols, down, 0, 96, "down_proj columns [96, 192)");

  // A column cut that is not on a kernel unit is refused.
  auto odd = w->GetCols(kMlp + "down_proj.weight", {kHidden, kInter}, 80, 112);
  ASSERT_FALSE(odd.ok());
  EXPECT_THAT(odd.status().message(), HasSubstr("multiples of 32"));

  // Fused gate | up of tp rank 1: rows [96, 192) of each.
  auto fused = w->ConcatRowSlices(
      {{kMlp + "gate_proj.weight", kInter, 96, 96}, {kMlp + "up_proj.weight", kInter, 96, 96}},
      kHidden);
  ASSERT_TRUE(fused.ok()) << fused.status();
  ASSERT_EQ(fused->dim(0), 192);
  auto gate_part = fused->Slice(0, 96);
  auto up_part = fused->Slice(96, 192);
  ASSERT_TRUE(gate_part.ok() && up_part.ok());
  ExpectDequantizes(*gate_part, gate, 96, 0, "fused gate rows");
  ExpectDequantizes(*up_part, up, 96, 0, "fused up rows");

  auto rows = w->GetRows(kMlp + "up_proj.weight", {kInter, kHidden}, 32, 64);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ExpectDequantizes(*rows, up, 32, 0, "up_proj rows [32, 96)");

  // Weights derived at load read the dequantized values in fp32.
  auto floats = w->GetFloats(kMlp + "down_proj.weight", {kHidden, kInter});
  ASSERT_TRUE(floats.ok()) << floats.status();
  for (int64_t r = 0; r < kHidden; ++r) {
    for (int64_t c = 0; c < kInter; ++c) {
      ASSERT_EQ((*floats)[r * kInter + c], down.Value(r, c)) << r << ", " << c;
    }
  }
  // The loader counts the packed bytes and the f32 scales it keeps.
  EXPECT_GT(w->bytes_loaded(), static_cast<uint64_t>(kHidden * kInter / 2));
}

TEST_F(Int4LoaderTest, GptqSymmetricAsymmetricV1V2) {
  for (const auto& [sym, format] : {std::pair{true, "gptq"}, std::pair{false, "gptq"},
                                    std::pair{false, "gptq_v2"}, std::pair{true, "gptq_v2"}}) {
    const std::string what = absl::StrCat(sym ? "sym " : "asym ", format);
    Json config = BaseConfig();
    config["quantization_config"] = GptqQuantization(sym, false, format);
    const Int4Weight down = MakeWeight(kHidden, kInter, 4, sym, false);
    const Int4Weight gate = MakeWeight(kInter, kHidden, 5, sym, false);
    const Int4Weight up = MakeWeight(kInter, kHidden, 6, sym, false);
    std::vector<TestTensor> tensors;
    const bool v1 = std::string(format) == "gptq";
    AddGptq(kMlp + "down_proj", down, v1, tensors);
    AddGptq(kMlp + "gate_proj", gate, v1, tensors);
    AddGptq(kMlp + "up_proj", up, v1, tensors);
    auto w = Open(absl::StrCat("gptq_", sym, "_", format), config, tensors);
    ASSERT_TRUE(w.ok()) << w.status();
    auto whole = w->Get(kMlp + "down_proj.weight", {kHidden, kInter});
    ASSERT_TRUE(whole.ok()) << what << ": " << whole.status();
    // Symmetric zero points are all 8: none kept.
    EXPECT_EQ(whole->block_scales()->zero_points == nullptr, sym) << what;
    EXPECT_EQ(whole->block_scales()->column_order, nullptr) << what;
    ExpectDequantizes(*whole, down, 0, 0, what);
    auto cols = w->GetCols(kMlp + "down_proj.weight", {kHidden, kInter}, 96, 96);
    ASSERT_TRUE(cols.ok()) << what << ": " << cols.status();
    ExpectDequantizes(*cols, down, 0, 96, what + " columns [96, 192)");
    auto fused = w->ConcatRowSlices(
        {{kMlp + "gate_proj.weight", kInter, 0, 96}, {kMlp + "up_proj.weight", kInter, 0, 96}},
        kHidden);
    ASSERT_TRUE(fused.ok()) << what << ": " << fused.status();
    ExpectDequantizes(*fused->Slice(0, 96), gate, 0, 0, what + " fused gate");
    ExpectDequantizes(*fused->Slice(96, 192), up, 0, 0, what + " fused up");
  }
}

TEST_F(Int4LoaderTest, GptqActOrder) {
  Json config = BaseConfig();
  config["quantization_config"] = GptqQuantization(false, true, "gptq");
  const Int4Weight down = MakeWeight(kHidden, kInter, 7, false, true);
  Int4Weight gate = MakeWeight(kInter, kHidden, 8, false, true);
  Int4Weight up = MakeWeight(kInter, kHidden, 9, false, true);
  std::vector<TestTensor> tensors;
  AddGptq(kMlp + "down_proj", down, true, tensors);
  AddGptq(kMlp + "gate_proj", gate, true, tensors);
  AddGptq(kMlp + "up_proj", up, true, tensors);
  auto w = Open("gptq_act_order", config, tensors);
  ASSERT_TRUE(w.ok()) << w.status();

  auto whole = w->Get(kMlp + "down_proj.weight", {kHidden, kInter});
  ASSERT_TRUE(whole.ok()) << whole.status();
  const kernels::BlockScales& s = *whole->block_scales();
  ASSERT_NE(s.column_order, nullptr);
  // Columns sorted by group, stably: group 0's features first, in their order.
  const int32_t* order = s.column_order->data<int32_t>();
  for (int64_t j = 1; j < kInter; ++j) {
    const int32_t a = order[j - 1], b = order[j];
    EXPECT_TRUE(down.g_idx[a] < down.g_idx[b] || (down.g_idx[a] == down.g_idx[b] && a < b));
  }
  ExpectDequantizes(*whole, down, 0, 0, "act-order down_proj");

  // gate and up share their input, so GPTQ gives them one order: they fuse.
  auto fused = w->ConcatRowSlices({{kMlp + "gate_proj.weight", kInter, 0, kInter},
                                   {kMlp + "up_proj.weight", kInter, 0, kInter}},
                                  kHidden);
  ASSERT_TRUE(fused.ok()) << fused.status();
  ExpectDequantizes(*fused->Slice(0, kInter), gate, 0, 0, "act-order fused gate");

  // GetFloats puts each value back at its input feature.
  auto floats = w->GetFloats(kMlp + "down_proj.weight", {kHidden, kInter});
  ASSERT_TRUE(floats.ok()) << floats.status();
  for (int64_t c = 0; c < kInter; ++c) ASSERT_EQ((*floats)[5 * kInter + c], down.Value(5, c));

  // Orders that differ (not what GPTQ writes for weights sharing an input) fuse dequantized.
  {
    Json config2 = BaseConfig();
    config2["torch_dtype"] = "float16";
    config2["hidden_size"] = kInter;  // three groups per gate / up row
    config2["quantization_config"] = GptqQuantization(false, true, "gptq");
    Int4Weight g2 = MakeWeight(kInter, kInter, 12, false, true);
    Int4Weight u2 = MakeWeight(kInter, kInter, 13, false, true);
    for (int64_t c = 0; c < kInter; ++c) u2.g_idx[c] = static_cast<int32_t>((c + 1) % 3);
    std::vector<TestTensor> t2;
    AddGptq(kMlp + "gate_proj", g2, true, t2);
    AddGptq(kMlp + "up_proj", u2, true, t2);
    auto w2 = Open("gptq_act_order_mismatch", config2, t2);
    ASSERT_TRUE(w2.ok()) << w2.status();
    auto mixed = w2->ConcatRowSlices(
        {{kMlp + "gate_proj.weight", kInter, 0, 32}, {kMlp + "up_proj.weight", kInter, 0, 32}},
        kInter);
    ASSERT_TRUE(mixed.ok()) << mixed.status();
    ASSERT_EQ(mixed->dtype(), DType::kF32);
    for (int64_t c = 0; c < kInter; ++c) {
      ASSERT_EQ(mixed->data<float>()[3 * kInter + c], g2.Value(3, c));
      ASSERT_EQ(mixed->data<float>()[(32 + 3) * kInter + c], u2.Value(3, c));
    }
  }

  // A tensor-parallel column slice would cut shuffled input features.
  auto cols = w->GetCols(kMlp + "down_proj.weight", {kHidden, kInter}, 96, 96);
  ASSERT_FALSE(cols.ok());
  EXPECT_EQ(cols.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(cols.status().message(), HasSubstr(kMlp + "down_proj.weight"));
  EXPECT_THAT(cols.status().message(), HasSubstr("act-order"));
}

// Without a backend that multiplies q4 weights, they are widened to the storage dtype (f32
// here, so exactly), act-order columns back in place; row-parallel slices need no unit.
TEST_F(Int4LoaderTest, WidenedWithoutQ4Backend) {
  Json config = BaseConfig();
  config["torch_dtype"] = "float32";
  config["quantization_config"] = GptqQuantization(false, true, "gptq");
  const Int4Weight down = MakeWeight(kHidden, kInter, 10, false, true);
  std::vector<TestTensor> tensors;
  AddGptq(kMlp + "down_proj", down, true, tensors);
  auto w = Open("widened", config, tensors, /*q4=*/false);
  ASSERT_TRUE(w.ok()) << w.status();
  auto t = w->Get(kMlp + "down_proj.weight", {kHidden, kInter});
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->dtype(), DType::kF32);
  for (int64_t r = 0; r < kHidden; ++r) {
    for (int64_t c = 0; c < kInter; ++c) {
      ASSERT_EQ(t->data<float>()[r * kInter + c], down.Value(r, c)) << r << ", " << c;
    }
  }
}

// Rows [from, rows) of `t` (kQ4 with block scales) all dequantize to zero.
void ExpectZeroRows(const Tensor& t, int64_t from, const std::string& what) {
  const kernels::BlockScales* s = t.block_scales();
  ASSERT_NE(s, nullptr) << what;
  const int64_t cols = t.dim(1), grid_cols = s->scales->dim(1);
  const auto* data = static_cast<const uint8_t*>(t.raw_data());
  for (int64_t r = from; r < t.dim(0); ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t k = (r + s->row_offset) * grid_cols + (c + s->col_offset) / s->block_cols;
      const float zero = s->zero_points ? s->zero_points->data<float>()[k]
                                        : static_cast<float>(kernels::kQ4SymmetricZero);
      const float v =
          (kernels::Q4Value(data + r * cols / 2, cols, c) - zero) * s->scales->data<float>()[k];
      ASSERT_EQ(v, 0.0f) << what << ": padding row " << r << ", column " << c;
    }
  }
}

// A quantized lm_head (GPTQ `lm_head: true`, asymmetric; compressed-tensors with
// lm_head not ignored): the whole table as kQ4, and the last vocab-parallel rank's rows padded
// to ceil(V / world) with rows that dequantize to zero, so their logits are zeros the model
// drops, as the zero rows of a plain table give; widened alike without q4 weights.
TEST_F(Int4LoaderTest, QuantizedLmHeadWholeAndVocabParallel) {
  struct Variant {
    std::string name;
    Json quantization;
    int64_t vocab;
    int world;  // GPTQ's vocabulary is a multiple of 8 (qzeros), so 2 ranks would not pad it
  };
  Json gptq = GptqQuantization(false, false, "gptq");
  gptq["lm_head"] = true;
  Json ct = CtQuantization();
  ct["ignore"] = Json::array();
  for (const Variant& v : {Variant{"gptq", gptq, 72, 5}, Variant{"ct", ct, 65, 2}}) {
    const bool is_gptq = v.name == "gptq";
    Json config = BaseConfig();
    config["vocab_size"] = v.vocab;
    config["quantization_config"] = v.quantization;
    const Int4Weight head = MakeWeight(v.vocab, kHidden, 12, /*symmetric=*/!is_gptq, false);
    std::vector<TestTensor> tensors;
    if (is_gptq) {
      AddGptq("lm_head", head, /*v1=*/true, tensors);
    } else {
      AddCt("lm_head", head, tensors);
    }
    const model::ParallelConfig shard{.tp = v.world, .ep = 1, .rank = v.world - 1};
    const model::IndexRange rows = shard.VocabRows(v.vocab);
    const int64_t per = shard.VocabRowsPerRank(v.vocab);
    ASSERT_GT(rows.count, 0);
    ASSERT_LT(rows.count, per);  // the last rank pads
    for (const bool q4 : {true, false}) {
      const std::string what = absl::StrCat(v.name, q4 ? " q4" : " widened");
      auto w = Open(absl::StrCat("lm_head_", v.name, q4 ? "_q4" : "_widened"), config, tensors, q4,
                    v.world, v.world - 1);
      ASSERT_TRUE(w.ok()) << what << ": " << w.status();
      auto whole = w->Get("lm_head.weight", {v.vocab, kHidden});
      ASSERT_TRUE(whole.ok()) << what << ": " << whole.status();
      auto padded =
          w->GetRowsPadded("lm_head.weight", {v.vocab, kHidden}, rows.begin, rows.count, per);
      ASSERT_TRUE(padded.ok()) << what << ": " << padded.status();
      ASSERT_EQ(padded->dim(0), per) << what;
      ASSERT_EQ(padded->dim(1), kHidden) << what;
      if (q4) {
        ExpectDequantizes(*whole, head, 0, 0, what + " whole");
        // GPTQ's zero points are kept (asymmetric), and padded with the rows.
        EXPECT_EQ(whole->block_scales()->zero_points != nullptr, is_gptq) << what;
        EXPECT_EQ(padded->block_scales()->zero_points != nullptr, is_gptq) << what;
        ExpectDequantizes(*padded->Slice(0, rows.count), head, rows.begin, 0, what + " rows");
        ExpectZeroRows(*padded, rows.count, what);
        // Packed: half a byte per weight.
        EXPECT_EQ(padded->nbytes(), static_cast<size_t>(per * kHidden / 2)) << what;
        continue;
      }
      // Without q4 weights, the storage dtype (bf16, which holds these values exactly).
      ASSERT_EQ(padded->dtype(), DType::kBF16) << what;
      const uint16_t* bits = padded->data<uint16_t>();
      for (int64_t r = 0; r < per; ++r) {
        for (int64_t c = 0; c < kHidden; ++c) {
          const float want = r < rows.count ? head.Value(rows.begin + r, c) : 0.0f;
          ASSERT_EQ(Bf16ToFloat(bits[r * kHidden + c]), want) << what << ": " << r << ", " << c;
        }
      }
    }
  }
}

// A GPTQ lm_head's tensors are checked as the layers' are: a missing one is named.
TEST_F(Int4LoaderTest, QuantizedLmHeadMissingTensor) {
  Json config = BaseConfig();
  config["quantization_config"] = GptqQuantization(true, false, "gptq");
  config["quantization_config"]["lm_head"] = true;
  const Int4Weight head = MakeWeight(64, kHidden, 13, true, false);
  std::vector<TestTensor> tensors;
  AddGptq("lm_head", head, true, tensors);
  std::erase_if(tensors, [](const TestTensor& t) { return t.name == "lm_head.scales"; });
  tensors.push_back({"lm_head.weight",
                     DType::kBF16,
                     {64, kHidden},
                     Bf16Bytes(std::vector<float>(64 * kHidden, 0.5f))});
  auto w = Open("lm_head_missing", config, tensors);
  ASSERT_TRUE(w.ok()) << w.status();
  auto t = w->GetRowsPadded("lm_head.weight", {64, kHidden}, 32, 32, 40);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("lm_head.scales is missing"));
}

TEST_F(Int4LoaderTest, PerChannelFp8) {
  Json config = BaseConfig();
  config["quantization_config"] = Json::parse(R"({"quant_method": "compressed-tensors",
    "format": "float-quantized", "ignore": ["lm_head"], "config_groups": {"group_0": {
    "targets": ["Linear"], "weights": {"num_bits": 8, "type": "float", "strategy": "channel",
    "symmetric": true, "dynamic": false}, "input_activations": {"num_bits": 8, "type": "float",
    "strategy": "token", "dynamic": true}}}})");
  std::vector<uint8_t> fp8(static_cast<size_t>(kHidden * kInter));
  std::vector<float> scale(static_cast<size_t>(kHidden));
  for (size_t i = 0; i < fp8.size(); ++i) fp8[i] = static_cast<uint8_t>((i * 37) % 0x7e);
  for (int64_t r = 0; r < kHidden; ++r) scale[r] = 0.25f * static_cast<float>(1 + r % 5);
  std::vector<TestTensor> tensors = {
      {kMlp + "down_proj.weight",
       DType::kF8E4M3,
       {kHidden, kInter},
       std::string(fp8.begin(), fp8.end())},
      {kMlp + "down_proj.weight_scale", DType::kBF16, {kHidden, 1}, Bf16Bytes(scale)}};
  auto w = Open("fp8_channel", config, tensors);
  ASSERT_TRUE(w.ok()) << w.status();
  auto cols = w->GetCols(kMlp + "down_proj.weight", {kHidden, kInter}, 96, 96);
  ASSERT_TRUE(cols.ok()) << cols.status();
  ASSERT_EQ(cols->dtype(), DType::kF8E4M3);
  const kernels::BlockScales& s = *cols->block_scales();
  EXPECT_EQ(s.block_rows, 1);
  EXPECT_EQ(s.block_cols, kInter);
  EXPECT_EQ(s.col_offset, 96);
  EXPECT_EQ(s.scales->dim(0), kHidden);
  EXPECT_EQ(s.scales->dim(1), 1);
  EXPECT_EQ(s.scales->data<float>()[3], scale[3]);
  auto floats = w->GetFloats(kMlp + "down_proj.weight", {kHidden, kInter});
  ASSERT_TRUE(floats.ok()) << floats.status();
  for (int64_t r = 0; r < kHidden; ++r) {
    for (int64_t c = 0; c < kInter; ++c) {
      ASSERT_EQ((*floats)[r * kInter + c], F8E4M3ToFloat(fp8[r * kInter + c]) * scale[r]);
    }
  }
}

// Each malformed tensor is refused with an error naming it and what is wrong.
TEST_F(Int4LoaderTest, ErrorsNameTheTensor) {
  const std::string down = kMlp + "down_proj";
  const Int4Weight w = MakeWeight(kHidden, kInter, 11, false, false);
  const Int4Weight act = MakeWeight(kHidden, kInter, 11, false, true);
  auto find = [](std::vector<TestTensor>& ts, const std::string& name) -> TestTensor& {
    for (TestTensor& t : ts) {
      if (t.name == name) return t;
    }
    ADD_FAILURE() << "no " << name;
    return ts.front();
  };
  auto erase = [](std::vector<TestTensor>& ts, const std::string& name) {
    std::erase_if(ts, [&](const TestTensor& t) { return t.name == name; });
  };
  struct Case {
    std::string name;
    bool gptq;
    std::function<void(std::vector<TestTensor>&)> edit;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"missing_weight_shape", false, [&](auto& ts) { erase(ts, down + ".weight_shape"); },
       down + ".weight_shape is missing"},
      {"weight_shape_disagrees", false,
       [&](auto& ts) {
         find(ts, down + ".weight_shape").bytes = Bytes(std::vector<int64_t>{kHidden, 128});
       },
       "weight_shape is [64, 128], the config implies [64, 192]"},
      {"scale_shape", false,
       [&](auto& ts) {
         TestTensor& t = find(ts, down + ".weight_scale");
         t.shape = {kHidden, 6};
         t.bytes.resize(kHidden * 6 * 2);
       },
       down + ".weight_scale has shape [64, 6], groups of 64 along [64, 192] need [64, 3]"},
      {"nan_scale", false,
       [&](auto& ts) {
         TestTensor& t = find(ts, down + ".weight_scale");
         const uint16_t nan = FloatToBf16(std::nanf(""));
         std::memcpy(t.bytes.data() + 2 * 4, &nan, 2);
       },
       "scale of row 1, group 1 is nan"},
      {"missing_scale", false, [&](auto& ts) { erase(ts, down + ".weight_scale"); },
       down + ".weight_scale is missing"},
      {"packed_dtype", false,
       [&](auto& ts) { find(ts, down + ".weight_packed").dtype = DType::kF32; },
       down + ".weight_packed has dtype F32 (expected I32)"},
      {"g_idx_out_of_range", true,
       [&](auto& ts) {
         std::vector<int32_t> g = w.g_idx;
         g[7] = 3;
         find(ts, down + ".g_idx").bytes = Bytes(g);
       },
       down + ".g_idx element 7 is 3, outside the 3 groups"},
      {"g_idx_uneven", true,
       [&](auto& ts) {
         std::vector<int32_t> g = w.g_idx;
         g[7] = 1;
         find(ts, down + ".g_idx").bytes = Bytes(g);
       },
       down + ".g_idx gives group 0 63 input features, not the group size 64"},
      {"missing_qzeros", true, [&](auto& ts) { erase(ts, down + ".qzeros"); },
       down + ".qzeros is missing"},
      {"qzeros_shape", true,
       [&](auto& ts) {
         TestTensor& t = find(ts, down + ".qzeros");
         t.shape = {3, 16};
         t.bytes.resize(3 * 16 * 4);
       },
       down + ".qzeros has shape [3, 16], groups of 64 along [64, 192] need [3, 8]"},
      {"nonzero_bias", true,
       [&](auto& ts) {
         find(ts, down + ".bias").bytes =
             F16Bytes(std::vector<float>(static_cast<size_t>(kHidden), 0.5f));
       },
       down + ".bias element 0 is 0.5, but the architecture has no bias there"},
  };
  for (const Case& c : cases) {
    Json config = BaseConfig();
    config["quantization_config"] =
        c.gptq ? GptqQuantization(false, false, "gptq") : CtQuantization();
    std::vector<TestTensor> tensors;
    if (c.gptq) {
      AddGptq(down, w, true, tensors);
    } else {
      AddCt(down, w, tensors);
    }
    c.edit(tensors);
    auto loader = Open("error_" + c.name, config, tensors);
    ASSERT_TRUE(loader.ok()) << c.name << ": " << loader.status();
    auto t = loader->Get(down + ".weight", {kHidden, kInter});
    ASSERT_FALSE(t.ok()) << c.name;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(t.status().message(), HasSubstr(c.expect)) << c.name;
    EXPECT_THAT(t.status().message(), HasSubstr(down + ".weight")) << c.name;
  }
  (void)act;
}

// --quantize int4: the routed experts of a bf16 checkpoint become kQ4 in groups of 128, exactly
// what model::QuantizeInt4Groups (make-model's quantizer) gives for the same values; the rest
// stays bf16.
TEST_F(Int4LoaderTest, QuantizeExpertsAtLoad) {
  Json config = {{"architectures", {"Qwen3MoeForCausalLM"}},
                 {"vocab_size", 64},
                 {"hidden_size", 256},
                 {"intermediate_size", 256},
                 {"num_hidden_layers", 1},
                 {"num_attention_heads", 2},
                 {"num_key_value_heads", 2},
                 {"head_dim", 128},
                 {"max_position_embeddings", 64},
                 {"rms_norm_eps", 1e-6},
                 {"num_experts", 2},
                 {"num_experts_per_tok", 1},
                 {"moe_intermediate_size", 128},
                 {"torch_dtype", "bfloat16"}};
  const std::string expert = "model.layers.0.mlp.experts.1.";
  const std::string attn = "model.layers.0.self_attn.o_proj.weight";
  std::vector<float> values(128 * 256);
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = Bf16ToFloat(FloatToBf16(std::sin(0.37f * static_cast<float>(i)) * 0.05f));
  }
  std::vector<TestTensor> tensors = {
      {expert + "gate_proj.weight", DType::kBF16, {128, 256}, Bf16Bytes(values)},
      {expert + "up_proj.weight", DType::kBF16, {128, 256}, Bf16Bytes(values)},
      {attn, DType::kBF16, {256, 256}, Bf16Bytes(std::vector<float>(256 * 256, 0.25f))}};
  auto w = Open("quantize_at_load", config, tensors);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE(w->QuantizeExpertWeightsToInt4().ok());

  std::vector<uint8_t> q(values.size());
  std::vector<float> scales(128 * 2);
  ASSERT_TRUE(model::QuantizeInt4Groups(values, 128, 256, model::kInt4QuantizeGroup, DType::kBF16,
                                        q, scales)
                  .ok());
  auto t = w->Get(expert + "gate_proj.weight", {128, 256});
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->dtype(), DType::kQ4);
  const kernels::BlockScales& s = *t->block_scales();
  EXPECT_EQ(s.block_cols, model::kInt4QuantizeGroup);
  EXPECT_EQ(s.zero_points, nullptr);
  const auto* packed = static_cast<const uint8_t*>(t->raw_data());
  for (int64_t r = 0; r < 128; ++r) {
    for (int64_t c = 0; c < 256; ++c) {
      ASSERT_EQ(kernels::Q4Value(packed + r * 128, 256, c), q[r * 256 + c]) << r << ", " << c;
      const float scale = s.scales->data<float>()[r * 2 + c / 128];
      ASSERT_EQ(scale, scales[r * 2 + c / 128]);
      // Round to nearest: within half a step (a full one at a clamped +amax).
      EXPECT_LE(std::fabs((q[r * 256 + c] - 8.0f) * scale - values[r * 256 + c]), scale);
    }
  }
  auto fused = w->ConcatRowSlices(
      {{expert + "gate_proj.weight", 128, 0, 128}, {expert + "up_proj.weight", 128, 0, 128}}, 256);
  ASSERT_TRUE(fused.ok()) << fused.status();
  EXPECT_EQ(fused->dtype(), DType::kQ4);
  auto plain = w->Get(attn, {256, 256});
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->dtype(), DType::kBF16);

  // Only on a backend with q4 kernels, and only for an unquantized checkpoint.
  auto host = Open("quantize_at_load_host", config, tensors, /*q4=*/false);
  ASSERT_TRUE(host.ok());
  absl::Status refused = host->QuantizeExpertWeightsToInt4();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.message(), HasSubstr("q4 weights"));
  Json gptq = BaseConfig();
  gptq["quantization_config"] = GptqQuantization(true, false, "gptq");
  auto quantized = Open("quantize_at_load_gptq", gptq, {});
  ASSERT_TRUE(quantized.ok());
  EXPECT_EQ(quantized->QuantizeExpertWeightsToInt4().code(), absl::StatusCode::kFailedPrecondition);
}

// --quantize int4 and make-model --dtype int4-ct --experts-only share one quantizer: a bf16
// checkpoint quantized at load holds exactly the values and scales of the int4 checkpoint made
// from the same weights, so the logits are bit-identical, and both hold fewer bytes than bf16.
TEST(Int4QuantizeAtLoad, EqualsTheInt4CheckpointOfTheSameValues) {
  make_model::MakeModelOptions options;
  options.arch = model::Architecture::kQwen3Moe;
  options.size = "tiny";
  options.overrides.hidden_size = 256;
  options.overrides.moe_intermediate_size = 128;
  options.seed = 29;
  const std::string base = std::string(EXPERTMESH_BINARY_DIR) + "/test-scratch/models/quant-int4";
  options.out_dir = base + "-bf16";
  absl::StatusOr<std::string> bf16 = expertmesh::testing::MakeSharedModel(options);
  options.quantization = model::LinearFormat::kInt4CompressedTensors;
  options.experts_only = true;
  options.out_dir = base + "-ct";
  absl::StatusOr<std::string> ct = expertmesh::testing::MakeSharedModel(options);
  ASSERT_TRUE(bf16.ok() && ct.ok()) << bf16.status() << ct.status();

  auto backend = kernels::cpu::CpuBackend::Create({.num_threads = 2});
  ASSERT_TRUE(backend.ok());
  ASSERT_TRUE((*backend)->SupportsQ4Weights());
  auto quantized =
      LoadModel(*bf16, backend->get(), {.compute_dtype = DType::kF32, .quantize_int4 = true});
  auto published = LoadModel(*ct, backend->get(), {.compute_dtype = DType::kF32});
  auto plain = LoadModel(*bf16, backend->get(), {.compute_dtype = DType::kF32});
  ASSERT_TRUE(quantized.ok()) << quantized.status();
  ASSERT_TRUE(published.ok()) << published.status();
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ((*quantized)->weight_bytes(), (*published)->weight_bytes());
  EXPECT_LT((*quantized)->weight_bytes(), (*plain)->weight_bytes());

  std::vector<int32_t> tokens;
  for (int i = 0; i < 9; ++i) tokens.push_back(static_cast<int32_t>(3 + i * 31));
  const std::vector<int32_t> table = testing::Blocks(0, 4);
  const std::vector<SequenceChunk> chunk = {{.tokens = tokens,
                                             .start_pos = 0,
                                             .block_table = table,
                                             .logits = SequenceChunk::Logits::kLast}};
  auto kv_a = AllocateKvCache(**backend, (*quantized)->kv_cache_spec(), 8, 4);
  auto kv_b = AllocateKvCache(**backend, (*published)->kv_cache_spec(), 8, 4);
  ASSERT_TRUE(kv_a.ok() && kv_b.ok());
  auto a = testing::RunStep(**quantized, *kv_a, chunk);
  auto b = testing::RunStep(**published, *kv_b, chunk);
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
  EXPECT_TRUE(expertmesh::testing::TensorsEqual(*a, *b));
}

TEST(Int4QuantizeTest, SymmetricMinMaxRoundToNearest) {
  // One group of 32: amax 3 -> scale 0.4; 3 / 0.4 = 7.5 rounds to 8 and clamps to 7, -3 -> -8.
  std::vector<float> v(32, 0.0f);
  v[0] = 3.0f;
  v[1] = -3.0f;
  v[2] = 0.2f;   // 0.5 step: half to even -> 0
  v[3] = 0.6f;   // 1.5 steps -> 2
  v[4] = -1.0f;  // -2.5 steps -> -2
  std::vector<uint8_t> q(32);
  std::vector<float> scale(1);
  ASSERT_TRUE(model::QuantizeInt4Groups(v, 1, 32, 32, DType::kF32, q, scale).ok());
  EXPECT_FLOAT_EQ(scale[0], 0.4f);
  EXPECT_EQ(q[0], 15);
  EXPECT_EQ(q[1], 0);
  EXPECT_EQ(q[2], 8);
  EXPECT_EQ(q[3], 10);
  EXPECT_EQ(q[4], 6);
  EXPECT_EQ(q[5], 8);
  // Scales rounded to the checkpoint dtype; a group of zeros keeps a tiny positive scale.
  std::vector<float> zeros(64, 0.0f);
  std::vector<uint8_t> q2(64);
  std::vector<float> s2(2);
  zeros[40] = 1.0f / 3;
  ASSERT_TRUE(model::QuantizeInt4Groups(zeros, 1, 64, 32, DType::kBF16, q2, s2).ok());
  EXPECT_GT(s2[0], 0.0f);
  EXPECT_EQ(s2[1], Bf16ToFloat(FloatToBf16(1.0f / 3 / 7.5f)));
  EXPECT_FALSE(model::QuantizeInt4Groups(zeros, 1, 64, 48, DType::kBF16, q2, s2).ok());
}

}  // namespace
}  // namespace expertmesh::models
