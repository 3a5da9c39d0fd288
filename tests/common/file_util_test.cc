#include "common/file_util.h"

#include <filesystem>

#include "gtest/gtest.h"

namespace expertmesh {
namespace {

std::string ScratchPath(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / "expertmesh_file_util_test";
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

TEST(FileUtilTest, WriteThenReadRoundTrips) {
  const std::string path = ScratchPath("round_trip.txt");
  ASSERT_TRUE(WriteStringToFile(path, std::string("a\0b", 3)).ok());
  auto text = ReadFileToString(path);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, std::string("a\0b", 3));
}

TEST(FileUtilTest, MalformedJsonNamesFileAndPosition) {
  const std::string path = ScratchPath("bad.json");
  ASSERT_TRUE(WriteStringToFile(path, "{\"a\": [1, 2,}").ok());
  auto json = ReadJsonFile(path);
  ASSERT_FALSE(json.ok());
  EXPECT_EQ(json.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(json.status().message().find("bad.json"), std::string::npos);
  EXPECT_NE(json.status().message().find("column"), std::string::npos);
}

TEST(FileUtilTest, ValidJsonParses) {
  const std::string path = ScratchPath("good.json");
  ASSERT_TRUE(WriteStringToFile(path, "{\"hidden_size\": 64}").ok());
  auto json = ReadJsonFile(path);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ((*json)["hidden_size"].get<int>(), 64);
}

TEST(FileUtilTest, MissingFileIsNotFound) {
  EXPECT_EQ(ReadFileToString(ScratchPath("missing.txt")).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace expertmesh
