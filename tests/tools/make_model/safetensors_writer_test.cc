#include "tools/make_model/safetensors_writer.h"

#include <cmath>
#include <cstring>
#include <filesystem>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "model/safetensors/safetensors_file.h"
#include "nlohmann/json.hpp"
#include "tools/make_model/prng.h"
#include "tools/make_model/weight_init.h"

namespace expertmesh::make_model {
namespace {

std::string ScratchDir(const std::string& name) {
  const std::string dir = std::string(EXPERTMESH_BINARY_DIR) + "/test-scratch/make_model/" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

TEST(PrngTest, NormalValuesHaveUnitVarianceAndAreReproducible) {
  Xoshiro256 rng(42);
  double sum = 0, sum_sq = 0;
  const int n = 1'000'000;
  for (int i = 0; i < n; ++i) {
    const double v = rng.NextNormal();
    sum += v;
    sum_sq += v * v;
  }
  const double mean = sum / n;
  EXPECT_NEAR(mean, 0.0, 0.005);
  EXPECT_NEAR(std::sqrt(sum_sq / n - mean * mean), 1.0, 0.005);
  Xoshiro256 a(7), b(7), c(8);
  EXPECT_EQ(a.Next(), b.Next());
  EXPECT_NE(a.Next(), c.Next());
  EXPECT_NE(DeriveSeed(1, "a.weight"), DeriveSeed(1, "b.weight"));
}

TEST(SafetensorsWriterTest, HeaderIsAlignedAndOffsetsAreContiguous) {
  const std::vector<TensorToWrite> tensors = {{"b", DType::kBF16, {3, 5}}, {"a", DType::kF32, {7}}};
  const std::string header = SafetensorsHeader(tensors);
  ASSERT_GE(header.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(header[i]);
  EXPECT_EQ(n + 8, header.size());
  EXPECT_EQ(header.size() % 8, 0u);
  const nlohmann::json json = nlohmann::json::parse(header.substr(8));
  EXPECT_EQ(json["__metadata__"]["format"], "pt");
  EXPECT_EQ(json["b"]["dtype"], "BF16");
  EXPECT_EQ(json["b"]["data_offsets"], nlohmann::json({0, 30}));
  EXPECT_EQ(json["a"]["dtype"], "F32");
  EXPECT_EQ(json["a"]["shape"], nlohmann::json({7}));
  EXPECT_EQ(json["a"]["data_offsets"], nlohmann::json({30, 58}));
}

TEST(SafetensorsWriterTest, ReaderSeesWhatWasWritten) {
  const std::string path = ScratchDir("writer") + "/t.safetensors";
  // Large enough to need several chunks.
  const std::vector<TensorToWrite> tensors = {{"model.norm.weight", DType::kF32, {4}},
                                              {"w", DType::kBF16, {1024, 3000}}};
  ASSERT_TRUE(WriteSafetensorsFile(path, tensors, [](const TensorToWrite& t) {
                return MakeInitSource(t, 5, 0.02f);
              }).ok());
  absl::StatusOr<std::unique_ptr<model::SafetensorsFile>> file = model::SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  absl::StatusOr<model::TensorView> norm = (*file)->Get("model.norm.weight");
  ASSERT_TRUE(norm.ok());
  for (int i = 0; i < 4; ++i) {
    float v;
    std::memcpy(&v, norm->data.data() + 4 * i, 4);
    EXPECT_EQ(v, 1.0f);
  }
  absl::StatusOr<model::TensorView> w = (*file)->Get("w");
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->dtype, DType::kBF16);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{1024, 3000}));
  double sum_sq = 0;
  for (int64_t i = 0; i < w->NumElements(); ++i) {
    uint16_t bits;
    std::memcpy(&bits, w->data.data() + 2 * i, 2);
    const double v = Bf16ToFloat(bits);
    sum_sq += v * v;
  }
  EXPECT_NEAR(std::sqrt(sum_sq / w->NumElements()), 0.02, 0.0005);
}

TEST(SafetensorsWriterTest, RejectsDuplicateNamesAndUnwritablePaths) {
  const auto sources = [](const TensorToWrite& t) { return MakeInitSource(t, 0, 0.02f); };
  const std::string dir = ScratchDir("writer-errors");
  EXPECT_EQ(WriteSafetensorsFile(dir + "/d.safetensors",
                                 {{"x", DType::kF32, {1}}, {"x", DType::kF32, {1}}}, sources)
                .code(),
            absl::StatusCode::kInvalidArgument);
  const absl::Status st =
      WriteSafetensorsFile(dir + "/no/such/dir/x.safetensors", {{"x", DType::kF32, {1}}}, sources);
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
  EXPECT_NE(st.message().find("no/such/dir"), std::string::npos);
}

}  // namespace
}  // namespace expertmesh::make_model
