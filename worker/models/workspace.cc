#include "worker/models/workspace.h"

#include <algorithm>

#include "common/status_macros.h"

namespace expertmesh::models {

absl::StatusOr<runtime::Tensor> Workspace::Get(std::string_view name, DType dtype,
                                               std::initializer_list<int64_t> shape) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  const int64_t need = std::max<int64_t>(1, numel * static_cast<int64_t>(DTypeSize(dtype)));
  runtime::Tensor& buf = buffers_[std::string(name)];
  if (!buf.defined() || buf.numel() < need) {
    // Grow by 1.5x so slowly rising batch sizes do not reallocate every step.
    const int64_t cap = buf.defined() ? std::max(need, buf.numel() * 3 / 2) : need;
    if (buf.defined()) bytes_ -= buf.nbytes();
    ASSIGN_OR_RETURN(buf, backend_->Allocate(DType::kU8, {cap}));
    bytes_ += buf.nbytes();
  }
  return runtime::Tensor::View(buf.raw_data(), dtype,
                               std::span<const int64_t>(shape.begin(), shape.size()), buf.device());
}

}  // namespace expertmesh::models
