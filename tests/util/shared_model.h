// A make-model directory that many test processes share. CTest runs every test case in its own
// process, two at a time, so a fixture that (re)writes one fixed directory races with another
// process reading it. Here the model is written once into a private temporary directory and
// renamed into place (atomic): a directory at `out_dir` with its ".complete" marker is always
// whole. Make-model output is deterministic for the same options, so whichever process wins the
// rename, the content is the same.
#ifndef EXPERTMESH_TESTS_UTIL_SHARED_MODEL_H_
#define EXPERTMESH_TESTS_UTIL_SHARED_MODEL_H_

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "tools/make_model/make_model.h"

namespace expertmesh::testing {

inline absl::StatusOr<std::string> MakeSharedModel(make_model::MakeModelOptions options) {
  namespace fs = std::filesystem;
  const fs::path out = options.out_dir;
  const fs::path marker = out / ".complete";
  if (fs::exists(marker)) return out.string();
  std::error_code ec;
  fs::create_directories(out.parent_path(), ec);
  const fs::path tmp = absl::StrCat(out.string(), ".tmp.", getpid());
  fs::remove_all(tmp, ec);
  options.out_dir = tmp.string();
  options.force = true;
  absl::StatusOr<make_model::MakeModelResult> made = make_model::MakeModel(options);
  if (!made.ok()) return made.status();
  std::ofstream(tmp / ".complete") << "made by MakeSharedModel\n";
  fs::rename(tmp, out, ec);
  if (ec) {
    fs::remove_all(tmp, ec);
    if (!fs::exists(marker)) {
      // A stale directory from an older layout (no marker): replace it.
      fs::remove_all(out, ec);
      return MakeSharedModel([&] {
        make_model::MakeModelOptions again = options;
        again.out_dir = out.string();
        return again;
      }());
    }
  }
  return out.string();
}

}  // namespace expertmesh::testing

#endif  // EXPERTMESH_TESTS_UTIL_SHARED_MODEL_H_
