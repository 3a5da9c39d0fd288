// Shared pieces of the CUDA kernel tests: a fixture that skips visibly without a GPU, and copies
// of host tensors to the device and back. The CPU backend is the reference for every op.
#ifndef EXPERTMESH_TESTS_KERNELS_CUDA_CUDA_TEST_UTIL_H_
#define EXPERTMESH_TESTS_KERNELS_CUDA_CUDA_TEST_UTIL_H_

#include <cuda_runtime_api.h>

#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_util.h"
#include "kernels/tensor.h"

namespace expertmesh::testing {

// Every CUDA test derives from this (or calls SkipWithoutGpu()): without a device, each case
// reports SKIPPED with the reason, which CTest counts as skipped, not passed.
class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda::CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA GPU on this machine";
  }
};

template <typename Param>
class CudaTestWithParam : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    if (!cuda::CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA GPU on this machine";
  }
};

// A device copy of a host tensor (same dtype and shape); the buffer owns the memory.
struct DeviceTensor {
  cuda::DeviceBuffer buffer;
  kernels::Tensor tensor;  // a kCuda view of `buffer`
};

inline DeviceTensor ToDevice(const kernels::Tensor& host) {
  DeviceTensor d;
  auto buffer = cuda::DeviceBuffer::Allocate(host.nbytes());
  EXPECT_TRUE(buffer.ok()) << buffer.status();
  d.buffer = std::move(*buffer);
  if (host.nbytes() > 0) {
    EXPECT_EQ(cudaMemcpy(d.buffer.get(), host.raw_data(), host.nbytes(), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  // A zero-byte tensor still needs a non-null pointer for View().
  static char empty;
  auto view = kernels::Tensor::View(host.nbytes() > 0 ? d.buffer.get() : &empty, host.dtype(),
                                    host.shape(), kernels::Device::kCuda);
  EXPECT_TRUE(view.ok()) << view.status();
  d.tensor = *view;
  return d;
}

// An uninitialised device tensor of the given dtype and shape.
inline DeviceTensor DeviceEmpty(DType dtype, std::initializer_list<int64_t> shape) {
  auto host = kernels::Tensor::Zeros(dtype, shape);
  EXPECT_TRUE(host.ok()) << host.status();
  return ToDevice(*host);
}

// A host copy of a device tensor (synchronises the device first).
inline kernels::Tensor ToHost(const kernels::Tensor& device) {
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  auto host = kernels::Tensor::Empty(device.dtype(), device.shape());
  EXPECT_TRUE(host.ok()) << host.status();
  if (device.nbytes() > 0) {
    EXPECT_EQ(
        cudaMemcpy(host->raw_data(), device.raw_data(), device.nbytes(), cudaMemcpyDeviceToHost),
        cudaSuccess);
  }
  return *host;
}

}  // namespace expertmesh::testing

#endif  // EXPERTMESH_TESTS_KERNELS_CUDA_CUDA_TEST_UTIL_H_
