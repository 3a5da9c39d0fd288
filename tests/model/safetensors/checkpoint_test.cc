#include "model/safetensors/checkpoint.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/safetensors/fp8_dequant.h"
#include "tests/model/safetensors/safetensors_writer.h"

namespace expertmesh::model {
namespace {

using testing::BuildFile;
using testing::Bytes;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::TestTensor;

TestTensor F32(const std::string& name, std::vector<float> values) {
  return {name, DType::kF32, {static_cast<int64_t>(values.size())}, Bytes(values)};
}

void WriteIndex(const std::string& dir, const nlohmann::json& weight_map) {
  testing::WriteFile(
      dir + "/model.safetensors.index.json",
      nlohmann::json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump());
}

TEST(CheckpointTest, SingleFile) {
  const std::string dir = testing::ScratchDir("single");
  testing::WriteFile(dir + "/model.safetensors", BuildFile({F32("a", {1, 2}), F32("b", {3})}));
  auto ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_FALSE((*ckpt)->sharded());
  EXPECT_THAT((*ckpt)->TensorNames(), ElementsAre("a", "b"));
  EXPECT_EQ((*ckpt)->Get("b")->NumElements(), 1);
  EXPECT_EQ((*ckpt)->PayloadBytesByDType().at(DType::kF32), 12u);
  auto missing = (*ckpt)->Get("c");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("no tensor named 'c'"));
}

TEST(CheckpointTest, Sharded) {
  const std::string dir = testing::ScratchDir("sharded");
  testing::WriteFile(dir + "/model-00001-of-00002.safetensors",
                     BuildFile({F32("a", {1, 2}), F32("b", {3})}));
  testing::WriteFile(dir + "/model-00002-of-00002.safetensors", BuildFile({F32("c", {4, 5, 6})}));
  WriteIndex(dir, {{"a", "model-00001-of-00002.safetensors"},
                   {"b", "model-00001-of-00002.safetensors"},
                   {"c", "model-00002-of-00002.safetensors"}});
  auto ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_TRUE((*ckpt)->sharded());
  EXPECT_EQ((*ckpt)->files().size(), 2u);
  EXPECT_EQ((*ckpt)->num_tensors(), 3u);
  auto c = (*ckpt)->Get("c");
  ASSERT_TRUE(c.ok());
  float values[3];
  std::memcpy(values, c->data.data(), 12);
  EXPECT_EQ(values[2], 6.0f);
}

struct BadDirCase {
  std::string name;
  std::function<void(const std::string& dir)> make;
  absl::StatusCode code;
  std::string expected;
};
void PrintTo(const BadDirCase& c, std::ostream* os) { *os << c.name; }

class BadCheckpointTest : public ::testing::TestWithParam<BadDirCase> {};

TEST_P(BadCheckpointTest, ClearError) {
  const std::string dir = testing::ScratchDir("bad_" + GetParam().name);
  GetParam().make(dir);
  auto ckpt = Checkpoint::Open(dir);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), GetParam().code) << ckpt.status();
  EXPECT_THAT(ckpt.status().message(), HasSubstr(dir));
  EXPECT_THAT(ckpt.status().message(), HasSubstr(GetParam().expected));
}

INSTANTIATE_TEST_SUITE_P(
    AllBadDirs, BadCheckpointTest,
    ::testing::Values(
        BadDirCase{"Empty", [](const std::string&) {}, absl::StatusCode::kNotFound,
                   "neither model.safetensors nor"},
        BadDirCase{"MissingShard",
                   [](const std::string& dir) {
                     WriteIndex(dir, {{"a", "s1.safetensors"}});
                   },
                   absl::StatusCode::kNotFound,
                   "shard 's1.safetensors' (holding 'a') does not exist"},
        BadDirCase{"TensorAbsentFromShard",
                   [](const std::string& dir) {
                     testing::WriteFile(dir + "/s1.safetensors", BuildFile({F32("a", {1})}));
                     WriteIndex(dir, {{"a", "s1.safetensors"}, {"b", "s1.safetensors"}});
                   },
                   absl::StatusCode::kInvalidArgument,
                   "tensor 'b' is listed in shard 's1.safetensors' but absent"},
        BadDirCase{"DuplicateTensor",
                   [](const std::string& dir) {
                     testing::WriteFile(dir + "/s1.safetensors", BuildFile({F32("a", {1})}));
                     testing::WriteFile(dir + "/s2.safetensors",
                                        BuildFile({F32("a", {1}), F32("b", {2})}));
                     WriteIndex(dir, {{"a", "s1.safetensors"}, {"b", "s2.safetensors"}});
                   },
                   absl::StatusCode::kInvalidArgument, "tensor 'a' is duplicated"},
        BadDirCase{"UnlistedTensor",
                   [](const std::string& dir) {
                     testing::WriteFile(dir + "/s1.safetensors",
                                        BuildFile({F32("a", {1}), F32("z", {2})}));
                     WriteIndex(dir, {{"a", "s1.safetensors"}});
                   },
                   absl::StatusCode::kInvalidArgument, "tensor 'z' is not listed"},
        BadDirCase{"IndexNotJson",
                   [](const std::string& dir) {
                     testing::WriteFile(dir + "/model.safetensors.index.json", "{\"weight_map\":");
                   },
                   absl::StatusCode::kInvalidArgument, "malformed JSON"},
        BadDirCase{"IndexWithoutWeightMap",
                   [](const std::string& dir) {
                     testing::WriteFile(dir + "/model.safetensors.index.json", "{}");
                   },
                   absl::StatusCode::kInvalidArgument, "missing 'weight_map'"},
        BadDirCase{"ShardEscapesDir",
                   [](const std::string& dir) {
                     WriteIndex(dir, {{"a", "../x.safetensors"}});
                   },
                   absl::StatusCode::kInvalidArgument, "not a file name in the model directory"},
        BadDirCase{"CorruptShard",
                   [](const std::string& dir) {
                     testing::WriteFile(dir + "/s1.safetensors", "garbage!garbage");
                     WriteIndex(dir, {{"a", "s1.safetensors"}});
                   },
                   absl::StatusCode::kInvalidArgument, "s1.safetensors"}),
    [](const auto& info) { return info.param.name; });

// fp8 e4m3fn bit patterns: 0x3C = 1.5, 0xB8 = -1.0, 0x40 = 2.0, 0x7E = 448 (the largest).
TEST(Fp8DequantTest, BlockScalesHandComputed) {
  const std::string dir = testing::ScratchDir("fp8");
  // weight [3, 3], blocks of 2x2 -> scale_inv [2, 2].
  std::string q = {'\x3C', '\x3C', '\x40', '\xB8', '\x3C', '\x7E', '\x3C', '\x40', '\xB8'};
  std::vector<float> scale = {2.0f, 4.0f, 0.5f, 0.25f};
  testing::WriteFile(dir + "/model.safetensors",
                     BuildFile({{"w.weight", DType::kF8E4M3, {3, 3}, q},
                                {"w.weight_scale_inv", DType::kF32, {2, 2}, Bytes(scale)}}));
  auto ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  TensorView w = *(*ckpt)->Get("w.weight");
  TensorView s = *(*ckpt)->Get("w.weight_scale_inv");
  auto full = DequantizeFp8(w, s, {2, 2});
  ASSERT_TRUE(full.ok()) << full.status();
  // Row 0: 1.5*2, 1.5*2, 2*4; row 1: -1*2, 1.5*2, 448*4; row 2 (block row 1): 1.5*.5, 2*.5, -1*.25.
  EXPECT_THAT(*full, ElementsAre(3.0f, 3.0f, 8.0f, -2.0f, 3.0f, 1792.0f, 0.75f, 1.0f, -0.25f));

  // The last row alone, as bf16 (all values exact in bf16).
  std::vector<uint16_t> bf16(3);
  ASSERT_TRUE(DequantizeFp8Rows(w, s, {2, 2}, 2, 1, DType::kBF16,
                                {reinterpret_cast<std::byte*>(bf16.data()), 6})
                  .ok());
  EXPECT_EQ(Bf16ToFloat(bf16[0]), 0.75f);
  EXPECT_EQ(Bf16ToFloat(bf16[1]), 1.0f);
  EXPECT_EQ(Bf16ToFloat(bf16[2]), -0.25f);

  // Errors name the weight.
  EXPECT_THAT(DequantizeFp8(w, s, {128, 128}).status().message(),
              HasSubstr("fp8 weight 'w.weight': scale 'w.weight_scale_inv' has shape [2, 2], "
                        "expected [1, 1]"));
  EXPECT_THAT(DequantizeFp8(s, s, {2, 2}).status().message(), HasSubstr("F8_E4M3"));
  EXPECT_THAT(DequantizeFp8Rows(w, s, {2, 2}, 2, 2, DType::kF32,
                                {reinterpret_cast<std::byte*>(bf16.data()), 6})
                  .message(),
              HasSubstr("rows [2, 4) outside [0, 3)"));
  std::vector<float> out(3);
  EXPECT_THAT(DequantizeFp8Rows(w, s, {2, 2}, 0, 1, DType::kF16,
                                {reinterpret_cast<std::byte*>(out.data()), 6})
                  .message(),
              HasSubstr("output dtype"));
}

}  // namespace
}  // namespace expertmesh::model
