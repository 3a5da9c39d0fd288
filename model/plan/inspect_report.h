// The text `expertmesh inspect DIR` prints: architecture and dimensions, parameter counts, the
// checkpoint on disk (validated against config.json) and the per-rank memory plan. Kept out of
// the CLI file so it is testable without CLI11.
#ifndef EXPERTMESH_MODEL_PLAN_INSPECT_REPORT_H_
#define EXPERTMESH_MODEL_PLAN_INSPECT_REPORT_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/plan/model_plan.h"
#include "model/plan/parallel_config.h"

namespace expertmesh::model {

struct InspectOptions {
  int tp = 1;
  int ep = 1;
  int64_t kv_tokens = 4096;  // tokens of KV cache to size per rank
  LoadQuantization at_load;  // the plan as the worker loads with these flags
};

struct InspectReport {
  std::string text;         // the human-readable report
  absl::Status checkpoint;  // OK, or why the safetensors in the directory are unusable
};

// Builds the report for `model_dir`. Errors: those of LoadModelConfig (the report needs a
// config) and of ValidateParallelism for the requested tp/ep. A missing checkpoint is reported
// in the text (configs alone can be inspected); a corrupt or mismatching one in `checkpoint`.
absl::StatusOr<InspectReport> BuildInspectReport(const std::string& model_dir,
                                                 const InspectOptions& options);

}  // namespace expertmesh::model

#endif  // EXPERTMESH_MODEL_PLAN_INSPECT_REPORT_H_
