// A Hugging Face model directory's weights: either one `model.safetensors` or shards listed by
// `model.safetensors.index.json` ({"metadata": {...}, "weight_map": {"tensor": "shard file"}}).
// All shards are mapped and validated on Open; views are zero-copy and valid while the
// Checkpoint lives.
#ifndef EXPERTMESH_MODEL_SAFETENSORS_CHECKPOINT_H_
#define EXPERTMESH_MODEL_SAFETENSORS_CHECKPOINT_H_

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "model/safetensors/safetensors_file.h"

namespace expertmesh::model {

inline constexpr char kSingleFileName[] = "model.safetensors";
inline constexpr char kIndexFileName[] = "model.safetensors.index.json";

class Checkpoint {
 public:
  // Opens `model_dir`. The index is preferred when both forms exist.
  // Errors (each naming the file):
  //  NOT_FOUND         neither file exists, or a shard named by the index is missing.
  //  INVALID_ARGUMENT  malformed index (not JSON, no weight_map object, a shard name that is not
  //                    a plain file name), a tensor listed in the index but absent from its
  //                    shard, a tensor found in a shard but not listed, the same tensor in two
  //                    shards; plus every error of SafetensorsFile::Open.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& model_dir);

  const std::string& dir() const { return dir_; }
  bool sharded() const { return sharded_; }
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

  bool Contains(std::string_view name) const;
  // Zero-copy view. NOT_FOUND naming the directory when the tensor does not exist.
  absl::StatusOr<TensorView> Get(std::string_view name) const;
  // All tensor names, sorted.
  std::vector<std::string> TensorNames() const;
  size_t num_tensors() const { return where_.size(); }
  // Sum of the sizes of the safetensors files (headers included).
  uint64_t TotalFileBytes() const;
  // Sum of the tensor payloads, by dtype.
  std::map<DType, uint64_t> PayloadBytesByDType() const;

 private:
  Checkpoint() = default;

  std::string dir_;
  bool sharded_ = false;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t, std::less<>> where_;  // tensor -> index into files_
};

}  // namespace expertmesh::model

#endif  // EXPERTMESH_MODEL_SAFETENSORS_CHECKPOINT_H_
