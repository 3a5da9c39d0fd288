#include "tools/make_model/corpus.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "tools/make_model/corpus_data.h"
#include "tools/make_model/utf8_check.h"

namespace expertmesh::make_model {

std::vector<CorpusDocument> BuiltinCorpus() {
  std::vector<CorpusDocument> docs;
  for (size_t i = 0; i < kBuiltinCorpusFileCount; ++i) {
    const BuiltinCorpusFile& f = kBuiltinCorpusFiles[i];
    docs.push_back({f.name, std::string(reinterpret_cast<const char*>(f.data), f.size)});
  }
  return docs;
}

absl::StatusOr<std::vector<CorpusDocument>> LoadCorpusDir(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat(dir, ": corpus directory not found"));
  }
  std::vector<std::string> paths;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.is_regular_file()) paths.push_back(entry.path().string());
  }
  std::sort(paths.begin(), paths.end());
  if (paths.empty()) return absl::InvalidArgumentError(absl::StrCat(dir, ": no corpus files"));
  std::vector<CorpusDocument> docs;
  for (const std::string& path : paths) {
    ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
    if (!IsValidUtf8(text)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": corpus file is not valid UTF-8"));
    }
    docs.push_back({std::filesystem::path(path).filename().string(), std::move(text)});
  }
  return docs;
}

}  // namespace expertmesh::make_model
