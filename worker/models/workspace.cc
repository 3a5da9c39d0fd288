#include "worker/models/workspace.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace expertmesh::models {

absl::StatusOr<kernels::Tensor> Workspace::Get(std::string_view name, DType dtype,
                                               std::initializer_list<int64_t> shape) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  const int64_t need = std::max<int64_t>(1, numel * static_cast<int64_t>(DTypeSize(dtype)));
  kernels::Tensor& buf = buffers_[std::string(name)];
  if (!buf.defined() || buf.numel() < need) {
    // Grow by 1.5x so slowly rising batch sizes do not reallocate every step.
    const int64_t cap = buf.defined() ? std::max(need, buf.numel() * 3 / 2) : need;
    if (buf.defined()) bytes_ -= buf.nbytes();
    ASSIGN_OR_RETURN(buf, backend_->Allocate(DType::kU8, {cap}));
    bytes_ += buf.nbytes();
  }
  return kernels::Tensor::View(buf.raw_data(), dtype,
                               std::span<const int64_t>(shape.begin(), shape.size()), buf.device());
}

template <typename T, typename Fill>
absl::StatusOr<kernels::Tensor> Workspace::Constant(const std::string& key, DType dtype,
                                                    int64_t count, Fill fill) {
  kernels::Tensor& buf = constants_[key];
  if (!buf.defined() || buf.dim(0) < count) {
    const int64_t cap =
        std::max<int64_t>({count, 1, buf.defined() ? buf.dim(0) * 3 / 2 : int64_t{0}});
    std::vector<T> host(static_cast<size_t>(cap));
    fill(host.data(), cap);
    if (buf.defined()) bytes_ -= buf.nbytes();
    ASSIGN_OR_RETURN(buf, backend_->Allocate(dtype, {cap}));
    bytes_ += buf.nbytes();
    RETURN_IF_ERROR(backend_->CopyFromHost(host.data(), buf));
  }
  ASSIGN_OR_RETURN(kernels::Tensor rows, buf.Slice(0, count));
  return rows.Reshape({count, 1});
}

absl::StatusOr<kernels::Tensor> Workspace::RowIds(int64_t count, int64_t period) {
  return Constant<int32_t>(absl::StrCat("row_ids/", period), DType::kI32, count,
                           [period](int32_t* p, int64_t n) {
                             for (int64_t i = 0; i < n; ++i) {
                               p[i] = static_cast<int32_t>(i % period);
                             }
                           });
}

absl::StatusOr<kernels::Tensor> Workspace::Ones(int64_t count) {
  return Constant<float>("ones", DType::kF32, count, [](float* p, int64_t n) {
    for (int64_t i = 0; i < n; ++i) p[i] = 1.0f;
  });
}

}  // namespace expertmesh::models
