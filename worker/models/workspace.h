// Scratch tensors reused from step to step: each named buffer grows to the largest size asked
// for and is then handed out as a view, so a steady-state decode step allocates nothing.
#ifndef EXPERTMESH_WORKER_MODELS_WORKSPACE_H_
#define EXPERTMESH_WORKER_MODELS_WORKSPACE_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <unordered_map>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace expertmesh::models {

class Workspace {
 public:
  explicit Workspace(kernels::Backend* backend) : backend_(backend) {}

  // A tensor of `dtype` and `shape` over the buffer called `name`. The view stays valid until
  // the next Get of the same name (which may reallocate); use distinct names for tensors that
  // are alive at the same time. Errors: those of Backend::Allocate.
  absl::StatusOr<kernels::Tensor> Get(std::string_view name, DType dtype,
                                      std::initializer_list<int64_t> shape);

  // Constant columns for any row count, built on the host and copied to the backend only when a
  // larger count than before is asked for (a smaller count's pattern is a prefix of it), so a
  // steady-state step neither fills nor copies them:
  //   RowIds: [count, 1] i32 with row r = r % period;   Ones: [count, 1] f32, all 1.0.
  absl::StatusOr<kernels::Tensor> RowIds(int64_t count, int64_t period);
  absl::StatusOr<kernels::Tensor> Ones(int64_t count);

  uint64_t bytes() const { return bytes_; }

 private:
  // The constant `key`, at least `count` rows of `dtype`, filled by fill(host, rows).
  template <typename T, typename Fill>
  absl::StatusOr<kernels::Tensor> Constant(const std::string& key, DType dtype, int64_t count,
                                           Fill fill);

  kernels::Backend* backend_;
  std::unordered_map<std::string, kernels::Tensor> constants_;
  std::unordered_map<std::string, kernels::Tensor> buffers_;  // u8 [capacity]
  uint64_t bytes_ = 0;
};

}  // namespace expertmesh::models

#endif  // EXPERTMESH_WORKER_MODELS_WORKSPACE_H_
