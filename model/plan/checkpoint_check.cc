#include "model/plan/checkpoint_check.h"

#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "model/config/weight_layout.h"

namespace expertmesh::model {
namespace {

absl::string_view Sv(std::string_view s) { return {s.data(), s.size()}; }

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// True for "model.layers.N.<...>" with N >= num_layers (MTP modules) and for legacy rotary
// buffers: names a loader may skip.
bool IsToleratedExtra(const std::string& name, int64_t num_layers) {
  if (name.ends_with("rotary_emb.inv_freq")) return true;
  constexpr std::string_view kPrefix = "model.layers.";
  if (!name.starts_with(kPrefix)) return false;
  int64_t layer = 0;
  size_t i = kPrefix.size();
  if (i >= name.size() || name[i] < '0' || name[i] > '9') return false;
  for (; i < name.size() && name[i] >= '0' && name[i] <= '9'; ++i) {
    layer = layer * 10 + (name[i] - '0');
    if (layer > 1'000'000) return false;
  }
  return layer >= num_layers;
}

}  // namespace

absl::Status CheckCheckpointAgainstConfig(const Checkpoint& checkpoint, const ModelConfig& config) {
  const std::string& dir = checkpoint.dir();
  std::vector<std::string> missing;
  std::set<std::string, std::less<>> expected_names;
  for (const TensorSpec& spec : ExpectedTensors(config)) {
    expected_names.insert(spec.name);
    if (!checkpoint.Contains(spec.name)) {
      if (!spec.optional) missing.push_back(spec.name);
      continue;
    }
    absl::StatusOr<TensorView> view = checkpoint.Get(spec.name);
    if (!view.ok()) return view.status();
    if (view->shape != spec.shape) {
      return absl::InvalidArgumentError(
          absl::StrCat(dir, ": tensor '", spec.name, "' has shape ", ShapeString(view->shape),
                       " but ", Sv(ArchitectureName(config.architecture)), " config.json implies ",
                       ShapeString(spec.shape)));
    }
    if (!CheckpointDTypeMatches(spec, config.torch_dtype, view->dtype)) {
      const DType want = CheckpointDType(spec, config.torch_dtype);
      return absl::InvalidArgumentError(
          absl::StrCat(dir, ": tensor '", spec.name, "' has dtype ", Sv(DTypeName(view->dtype)),
                       " but config.json implies ",
                       spec.any_float_dtype ? "F32, BF16 or F16" : Sv(DTypeName(want))));
    }
  }
  if (!missing.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir, ": checkpoint is missing tensor '", missing.front(), "'",
        missing.size() > 1 ? absl::StrCat(" and ", missing.size() - 1, " more") : "",
        " that config.json (", Sv(ArchitectureName(config.architecture)), ") requires"));
  }
  for (const std::string& name : checkpoint.TensorNames()) {
    if (!expected_names.contains(name) && !IsToleratedExtra(name, config.num_hidden_layers)) {
      return absl::InvalidArgumentError(
          absl::StrCat(dir, ": unexpected tensor '", name, "' that config.json (",
                       Sv(ArchitectureName(config.architecture)), ") does not describe"));
    }
  }
  return absl::OkStatus();
}

}  // namespace expertmesh::model
