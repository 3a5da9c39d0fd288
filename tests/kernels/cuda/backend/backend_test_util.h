// Shared pieces of the CudaBackend tests: a fixture owning a CudaBackend (skipped visibly without
// a GPU), host <-> backend copies through the Backend interface itself, seeded random tensors.
#ifndef EXPERTMESH_TESTS_KERNELS_CUDA_RUNTIME_BACKEND_TEST_UTIL_H_
#define EXPERTMESH_TESTS_KERNELS_CUDA_RUNTIME_BACKEND_TEST_UTIL_H_

#include <algorithm>
#include <memory>
#include <random>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cuda/backend/cuda_backend_impl.h"
#include "kernels/tensor.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/util/tensor_compare.h"

namespace expertmesh::testing {

using cuda::CudaBackend;
using kernels::Tensor;

inline std::unique_ptr<CudaBackend> MakeCudaBackend(cuda::CudaBackendOptions options = {}) {
  // Small defaults: tests share the GPU with whatever else runs there.
  if (options.workspace_bytes == cuda::CudaBackendOptions{}.workspace_bytes) {
    options.workspace_bytes = size_t{64} << 20;
  }
  auto backend = CudaBackend::Create(options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? std::move(*backend) : nullptr;
}

class CudaBackendTest : public CudaTest {
 protected:
  void SetUp() override {
    CudaTest::SetUp();
    if (IsSkipped()) return;
    backend_ = MakeCudaBackend();
    ASSERT_NE(backend_, nullptr);
  }

  // A backend copy of a host tensor, through Allocate + CopyFromHost.
  Tensor Upload(const Tensor& host) {
    auto t = backend_->Allocate(host.dtype(), host.shape());
    EXPECT_TRUE(t.ok()) << t.status();
    if (!t.ok()) return Tensor();
    EXPECT_TRUE(backend_->CopyFromHost(host.raw_data(), *t).ok());
    return *t;
  }
  // An optional input: undefined stays undefined.
  Tensor UploadOpt(const Tensor& host) { return host.defined() ? Upload(host) : Tensor(); }
  // A host copy of a backend tensor, through CopyToHost (which synchronises).
  Tensor Download(const Tensor& dev) {
    Tensor host = *Tensor::Empty(dev.dtype(), dev.shape());
    const absl::Status s = backend_->CopyToHost(dev, host.raw_data());
    EXPECT_TRUE(s.ok()) << s;
    return host;
  }

  std::unique_ptr<CudaBackend> backend_;
};

// A tensor of uniform values in [lo, hi), rounded to its dtype (f32 or bf16).
inline Tensor Random(DType dtype, std::initializer_list<int64_t> shape, std::mt19937& rng,
                     float lo = -1.0f, float hi = 1.0f) {
  Tensor t = *Tensor::Empty(dtype, shape);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const float v = dist(rng);
    if (dtype == DType::kF32) {
      t.data<float>()[i] = v;
    } else {
      t.data<uint16_t>()[i] = FloatToBf16(v);
    }
  }
  return t;
}

inline Tensor I32(const std::vector<int32_t>& values, std::initializer_list<int64_t> shape) {
  Tensor t = *Tensor::Empty(DType::kI32, shape);
  std::copy(values.begin(), values.end(), t.data<int32_t>());
  return t;
}

}  // namespace expertmesh::testing

#endif  // EXPERTMESH_TESTS_KERNELS_CUDA_RUNTIME_BACKEND_TEST_UTIL_H_
