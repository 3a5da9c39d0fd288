#include "common/mapped_file.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace expertmesh {
namespace {

std::string ScratchPath(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / "expertmesh_common_test";
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

TEST(MappedFileTest, MapsContents) {
  const std::string path = ScratchPath("contents.bin");
  std::ofstream(path, std::ios::binary) << "hello, weights";
  auto mapped = MappedFile::Open(path);
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  ASSERT_EQ((*mapped)->size(), 14u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>((*mapped)->bytes().data()), 14),
            "hello, weights");
}

TEST(MappedFileTest, EmptyFileIsEmptySpan) {
  const std::string path = ScratchPath("empty.bin");
  std::ofstream(path, std::ios::binary).flush();
  auto mapped = MappedFile::Open(path);
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  EXPECT_TRUE((*mapped)->bytes().empty());
}

TEST(MappedFileTest, MissingFileIsNotFoundAndNamesPath) {
  auto mapped = MappedFile::Open("/nonexistent/expertmesh/file.safetensors");
  ASSERT_FALSE(mapped.ok());
  EXPECT_EQ(mapped.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(mapped.status().message().find("/nonexistent/expertmesh/file.safetensors"),
            std::string::npos);
}

TEST(MappedFileTest, DirectoryIsRejected) {
  auto mapped = MappedFile::Open(std::filesystem::temp_directory_path().string());
  ASSERT_FALSE(mapped.ok());
  EXPECT_EQ(mapped.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace expertmesh
