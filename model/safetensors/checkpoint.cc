#include "model/safetensors/checkpoint.h"

#include <filesystem>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace expertmesh::model {
namespace {

absl::string_view Sv(std::string_view s) { return {s.data(), s.size()}; }

// A shard name must stay inside the model directory.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name != "." && name != ".." &&
         name.find('\0') == std::string::npos;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& model_dir) {
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint());
  ckpt->dir_ = model_dir;
  const std::string index_path = model_dir + "/" + kIndexFileName;
  const std::string single_path = model_dir + "/" + kSingleFileName;
  std::error_code ec;

  if (!std::filesystem::exists(index_path, ec)) {
    if (!std::filesystem::exists(single_path, ec)) {
      return absl::NotFoundError(absl::StrCat(model_dir, ": neither ", kSingleFileName, " nor ",
                                              kIndexFileName, " exists"));
    }
    ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(single_path));
    for (const TensorEntry& entry : file->entries()) ckpt->where_.emplace(entry.name, 0);
    ckpt->files_.push_back(std::move(file));
    return ckpt;
  }

  ckpt->sharded_ = true;
  ASSIGN_OR_RETURN(nlohmann::json index, ReadJsonFile(index_path));
  if (!index.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": not a JSON object"));
  }
  auto map_it = index.find("weight_map");
  if (map_it == index.end() || !map_it->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": missing 'weight_map' object"));
  }
  // Open each shard once, in name order.
  std::map<std::string, std::vector<std::string>> listed;  // shard -> tensors the index names
  for (const auto& [tensor, shard] : map_it->items()) {
    if (!shard.is_string() || !IsPlainFileName(shard.get<std::string>())) {
      return absl::InvalidArgumentError(absl::StrCat(
          index_path, ": weight_map['", tensor, "'] is not a file name in the model directory"));
    }
    listed[shard.get<std::string>()].push_back(tensor);
  }
  for (const auto& [shard, tensors] : listed) {
    const std::string shard_path = model_dir + "/" + shard;
    if (!std::filesystem::exists(shard_path, ec)) {
      return absl::NotFoundError(absl::StrCat(index_path, ": shard '", shard, "' (holding '",
                                              tensors.front(), "') does not exist"));
    }
    ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(shard_path));
    const size_t file_index = ckpt->files_.size();
    std::set<std::string_view> expected(tensors.begin(), tensors.end());
    for (const std::string& tensor : tensors) {
      if (!file->Contains(tensor)) {
        return absl::InvalidArgumentError(absl::StrCat(index_path, ": tensor '", tensor,
                                                       "' is listed in shard '", shard,
                                                       "' but absent from ", shard_path));
      }
    }
    for (const TensorEntry& entry : file->entries()) {
      auto [it, inserted] = ckpt->where_.emplace(entry.name, file_index);
      if (!inserted) {
        return absl::InvalidArgumentError(absl::StrCat(shard_path, ": tensor '", entry.name,
                                                       "' is duplicated (also in ",
                                                       ckpt->files_[it->second]->path(), ")"));
      }
      if (!expected.contains(entry.name)) {
        return absl::InvalidArgumentError(absl::StrCat(shard_path, ": tensor '", entry.name,
                                                       "' is not listed for this shard in ",
                                                       index_path));
      }
    }
    ckpt->files_.push_back(std::move(file));
  }
  return ckpt;
}

bool Checkpoint::Contains(std::string_view name) const { return where_.contains(name); }

absl::StatusOr<TensorView> Checkpoint::Get(std::string_view name) const {
  auto it = where_.find(name);
  if (it == where_.end()) {
    return absl::NotFoundError(
        absl::StrCat(dir_, ": checkpoint has no tensor named '", Sv(name), "'"));
  }
  return files_[it->second]->Get(name);
}

std::vector<std::string> Checkpoint::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(where_.size());
  for (const auto& entry : where_) names.push_back(entry.first);
  return names;
}

uint64_t Checkpoint::TotalFileBytes() const {
  uint64_t total = 0;
  for (const auto& file : files_) total += file->size_bytes();
  return total;
}

std::map<DType, uint64_t> Checkpoint::PayloadBytesByDType() const {
  std::map<DType, uint64_t> bytes;
  for (const auto& file : files_) {
    for (const TensorEntry& entry : file->entries()) bytes[entry.dtype] += entry.end - entry.begin;
  }
  return bytes;
}

}  // namespace expertmesh::model
