#include "model/safetensors/safetensors_file.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/model/safetensors/safetensors_writer.h"

namespace expertmesh::model {
namespace {

using testing::BuildFile;
using testing::Bytes;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::RawFile;

std::vector<float> ToFloats(std::span<const std::byte> bytes) {
  std::vector<float> out(bytes.size() / 4);
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

TEST(SafetensorsFileTest, ViewsAreZeroCopyAndCorrect) {
  const std::string dir = testing::ScratchDir("views");
  std::vector<float> w = {1, 2, 3, 4, 5, 6};
  std::vector<uint16_t> b = {FloatToBf16(1.5f), FloatToBf16(-2.0f)};
  testing::WriteFile(dir + "/a.safetensors", BuildFile({{"w", DType::kF32, {2, 3}, Bytes(w)},
                                                        {"b", DType::kBF16, {2}, Bytes(b)},
                                                        {"empty", DType::kF16, {0, 4}, ""}},
                                                       {{"format", "pt"}}));
  auto file = SafetensorsFile::Open(dir + "/a.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->entries().size(), 3u);
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  auto view = (*file)->Get("w");
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->dtype, DType::kF32);
  EXPECT_THAT(view->shape, ElementsAre(2, 3));
  EXPECT_EQ(view->NumElements(), 6);
  EXPECT_THAT(ToFloats(view->data), ElementsAre(1, 2, 3, 4, 5, 6));
  auto bview = (*file)->Get("b");
  ASSERT_TRUE(bview.ok());
  uint16_t bits[2];
  std::memcpy(bits, bview->data.data(), 4);
  EXPECT_EQ(Bf16ToFloat(bits[0]), 1.5f);
  EXPECT_EQ(Bf16ToFloat(bits[1]), -2.0f);
  EXPECT_EQ((*file)->Get("empty")->data.size(), 0u);
  auto missing = (*file)->Get("nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("a.safetensors"));
}

struct BadFileCase {
  std::string name;
  std::string contents;
  absl::StatusCode code;
  std::string expected;
};

void PrintTo(const BadFileCase& c, std::ostream* os) { *os << c.name; }

class BadSafetensorsTest : public ::testing::TestWithParam<BadFileCase> {};

// Each case goes through both entry points: the in-memory parser and Open on a real file.
TEST_P(BadSafetensorsTest, ClearError) {
  const BadFileCase& c = GetParam();
  const std::string path = testing::ScratchDir("bad_" + c.name) + "/" + c.name + ".safetensors";
  testing::WriteFile(path, c.contents);
  auto file = SafetensorsFile::Open(path);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), c.code) << file.status();
  EXPECT_THAT(file.status().message(), HasSubstr(path));
  EXPECT_THAT(file.status().message(), HasSubstr(c.expected));
  auto parsed = ParseSafetensorsHeader(
      {reinterpret_cast<const std::byte*>(c.contents.data()), c.contents.size()}, "mem");
  EXPECT_EQ(parsed.status().code(), c.code);
}

std::string Entry(const std::string& name, const std::string& body) {
  return "{\"" + name + "\":" + body + "}";
}

const auto kDataLoss = absl::StatusCode::kDataLoss;
const auto kInvalid = absl::StatusCode::kInvalidArgument;

INSTANTIATE_TEST_SUITE_P(
    AllBadInputs, BadSafetensorsTest,
    ::testing::Values(
        BadFileCase{"Empty", "", kDataLoss, "shorter than the 8-byte header length"},
        BadFileCase{"FourBytes", "abcd", kDataLoss, "truncated"},
        BadFileCase{"HeaderPastEnd", RawFile("{}", "").substr(0, 8) + "{", kDataLoss,
                    "header length 2 runs past the end"},
        BadFileCase{"HugeHeaderLength", std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8) + "{}",
                    kInvalid, "exceeds the limit"},
        BadFileCase{"NotJson", RawFile("{\"w\": [1,", ""), kInvalid, "header is not valid JSON"},
        BadFileCase{"NotAnObject", RawFile("[1, 2, 3]", ""), kInvalid,
                    "does not start with a JSON object"},
        BadFileCase{"EntryNotObject", RawFile(Entry("w", "5"), ""), kInvalid,
                    "tensor 'w': expected an object"},
        BadFileCase{"MissingDtype",
                    RawFile(Entry("w", R"({"shape":[1],"data_offsets":[0,4]})"), "abcd"), kInvalid,
                    "tensor 'w': missing 'dtype'"},
        BadFileCase{"MissingShape",
                    RawFile(Entry("w", R"({"dtype":"F32","data_offsets":[0,4]})"), "abcd"),
                    kInvalid, "tensor 'w': missing 'shape'"},
        BadFileCase{"MissingOffsets", RawFile(Entry("w", R"({"dtype":"F32","shape":[1]})"), "abcd"),
                    kInvalid, "tensor 'w': missing 'data_offsets'"},
        BadFileCase{"UnknownDtype",
                    RawFile(Entry("w", R"({"dtype":"F4","shape":[1],"data_offsets":[0,1]})"), "a"),
                    kInvalid, "tensor 'w': unknown dtype 'F4'"},
        BadFileCase{
            "NegativeDim",
            RawFile(Entry("w", R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})"), "abcd"),
            kInvalid, "not a non-negative integer"},
        BadFileCase{
            "FractionalDim",
            RawFile(Entry("w", R"({"dtype":"F32","shape":[1.5],"data_offsets":[0,4]})"), "abcd"),
            kInvalid, "not a non-negative integer"},
        BadFileCase{"OverflowingShape",
                    RawFile(Entry("w", R"({"dtype":"F32","shape":[4294967296,4294967296],)"
                                       R"("data_offsets":[0,4]})"),
                            "abcd"),
                    kInvalid, "overflows 64 bits"},
        BadFileCase{"OverflowingBytes",
                    RawFile(Entry("w", R"({"dtype":"F32","shape":[4611686018427387904],)"
                                       R"("data_offsets":[0,4]})"),
                            "abcd"),
                    kInvalid, "byte size overflows"},
        BadFileCase{
            "SizeMismatch",
            RawFile(Entry("w", R"({"dtype":"F32","shape":[2],"data_offsets":[0,4]})"), "abcd"),
            kInvalid, "span 4 bytes but shape x dtype (F32) needs 8"},
        BadFileCase{
            "OffsetsReversed",
            RawFile(Entry("w", R"({"dtype":"F32","shape":[1],"data_offsets":[4,0]})"), "abcd"),
            kInvalid, "end before they begin"},
        BadFileCase{
            "OffsetsNotPair",
            RawFile(Entry("w", R"({"dtype":"F32","shape":[1],"data_offsets":[0]})"), "abcd"),
            kInvalid, "not a pair"},
        BadFileCase{
            "OffsetsPastEnd",
            RawFile(Entry("w", R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})"), "abcd"),
            kDataLoss, "tensor 'w': data_offsets [0, 8] run past the end"},
        BadFileCase{"Overlap",
                    RawFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                            "abcdefgh"),
                    kInvalid, "tensor 'b': data_offsets [4, 8] overlap"},
        BadFileCase{
            "Hole",
            RawFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", "abcdefgh"),
            kInvalid, "tensor 'a': data_offsets begin at 4 leaving a hole"},
        BadFileCase{
            "TrailingData",
            RawFile(Entry("w", R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})"), "abcdEXTRA"),
            kInvalid, "5 bytes after the last tensor"},
        BadFileCase{"MetadataNotStrings", RawFile(R"({"__metadata__":{"n":1}})", ""), kInvalid,
                    "__metadata__ value 'n' is not a string"}),
    [](const auto& info) { return info.param.name; });

TEST(SafetensorsFileTest, MissingFileIsNotFound) {
  auto file = SafetensorsFile::Open("/nonexistent/x.safetensors");
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
}

TEST(SafetensorsFileTest, TruncatedValidFile) {
  std::vector<float> w = {1, 2, 3, 4};
  std::string good = BuildFile({{"w", DType::kF32, {4}, Bytes(w)}});
  const std::string path = testing::ScratchDir("truncated") + "/t.safetensors";
  testing::WriteFile(path, good.substr(0, good.size() - 3));
  auto file = SafetensorsFile::Open(path);
  EXPECT_EQ(file.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(file.status().message(), HasSubstr("tensor 'w'"));
  EXPECT_THAT(file.status().message(), HasSubstr("truncated file?"));
}

}  // namespace
}  // namespace expertmesh::model
