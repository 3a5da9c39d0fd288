// Shared pieces of the tests of kernels/cuda/ops: seeded host tensors, the CPU backend as the
// reference, a device error-flag word, poisoned device outputs and element comparisons.
#ifndef EXPERTMESH_TESTS_KERNELS_CUDA_OPS_OPS_TEST_UTIL_H_
#define EXPERTMESH_TESTS_KERNELS_CUDA_OPS_OPS_TEST_UTIL_H_

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <sstream>
#include <string>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/cuda_util.h"
#include "kernels/tensor.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace expertmesh::testing {

using kernels::Tensor;

inline std::string DTypeShort(DType d) {
  switch (d) {
    case DType::kF32:
      return "f32";
    case DType::kBF16:
      return "bf16";
    case DType::kF16:
      return "f16";
    default:
      return std::string(DTypeName(d));
  }
}

inline Tensor HostEmpty(DType dtype, std::initializer_list<int64_t> shape) {
  auto t = Tensor::Empty(dtype, shape);
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

// Stores v into element i of an f32, bf16 (rounded to nearest even) or f16 tensor.
inline void SetValue(Tensor& t, int64_t i, float v) {
  switch (t.dtype()) {
    case DType::kF32:
      t.data<float>()[i] = v;
      break;
    case DType::kBF16:
      t.data<uint16_t>()[i] = FloatToBf16(v);
      break;
    case DType::kF16:
      t.data<uint16_t>()[i] = FloatToF16(v);
      break;
    default:
      ADD_FAILURE() << "SetValue: unsupported dtype " << DTypeName(t.dtype());
  }
}

inline float GetValue(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::kF32:
      return t.data<float>()[i];
    case DType::kBF16:
      return Bf16ToFloat(t.data<uint16_t>()[i]);
    case DType::kF16:
      return F16ToFloat(t.data<uint16_t>()[i]);
    default:
      ADD_FAILURE() << "GetValue: unsupported dtype " << DTypeName(t.dtype());
      return 0.0f;
  }
}

// Uniform values in [lo, hi), rounded to the dtype.
inline Tensor RandomTensor(DType dtype, std::initializer_list<int64_t> shape, std::mt19937& rng,
                           float lo = -1.0f, float hi = 1.0f) {
  Tensor t = HostEmpty(dtype, shape);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) SetValue(t, i, dist(rng));
  return t;
}

// A deep copy (CPU ops work in place on some arguments).
inline Tensor Clone(const Tensor& t) {
  auto c = Tensor::Empty(t.dtype(), t.shape());
  EXPECT_TRUE(c.ok()) << c.status();
  if (t.nbytes() > 0) std::memcpy(c->raw_data(), t.raw_data(), t.nbytes());
  return *c;
}

inline std::unique_ptr<kernels::cpu::CpuBackend> CpuReference() {
  auto backend = kernels::cpu::CpuBackend::Create({});
  EXPECT_TRUE(backend.ok()) << backend.status();
  return std::move(*backend);
}

// A device word for the kernels' error flags, zeroed at creation.
class DeviceFlags {
 public:
  DeviceFlags() {
    auto buffer = cuda::DeviceBuffer::Allocate(sizeof(uint32_t));
    EXPECT_TRUE(buffer.ok()) << buffer.status();
    buffer_ = std::move(*buffer);
    EXPECT_EQ(cudaMemset(buffer_.get(), 0, sizeof(uint32_t)), cudaSuccess);
  }
  uint32_t* get() const { return buffer_.as<uint32_t>(); }
  uint32_t Read() const {
    uint32_t v = 0;
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(&v, buffer_.get(), sizeof(v), cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }

 private:
  cuda::DeviceBuffer buffer_;
};

// A device tensor of `shape` with every byte `fill` (0xff: NaN in f32, bf16 and f16, -1 in
// i32), so an element a kernel forgets to write fails the comparison.
inline DeviceTensor DevicePoisoned(DType dtype, std::initializer_list<int64_t> shape,
                                   int fill = 0xff) {
  DeviceTensor d = ToDevice(HostEmpty(dtype, shape));
  if (d.tensor.nbytes() > 0) {
    EXPECT_EQ(cudaMemset(d.buffer.get(), fill, d.tensor.nbytes()), cudaSuccess);
  }
  return d;
}

// A device copy of `host` placed `offset_bytes` past a 256-byte aligned allocation: a nonzero
// offset defeats the 16-byte vector paths, so the kernels' scalar fallbacks get tested too.
struct OffsetDeviceTensor {
  cuda::DeviceBuffer buffer;
  void* data = nullptr;
};
inline OffsetDeviceTensor ToDeviceAt(const Tensor& host, size_t offset_bytes) {
  OffsetDeviceTensor d;
  auto buffer = cuda::DeviceBuffer::Allocate(host.nbytes() + offset_bytes + 16);
  EXPECT_TRUE(buffer.ok()) << buffer.status();
  d.buffer = std::move(*buffer);
  d.data = static_cast<char*>(d.buffer.get()) + offset_bytes;
  if (host.nbytes() > 0) {
    EXPECT_EQ(cudaMemcpy(d.data, host.raw_data(), host.nbytes(), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  return d;
}
inline Tensor HostCopyOf(const void* device, DType dtype, std::initializer_list<int64_t> shape) {
  Tensor t = HostEmpty(dtype, shape);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  if (t.nbytes() > 0) {
    EXPECT_EQ(cudaMemcpy(t.raw_data(), device, t.nbytes(), cudaMemcpyDeviceToHost), cudaSuccess);
  }
  return t;
}

// Byte-for-byte equality; names the first differing element.
inline ::testing::AssertionResult BitEqual(const Tensor& got, const Tensor& want) {
  if (got.dtype() != want.dtype() || got.nbytes() != want.nbytes()) {
    return ::testing::AssertionFailure()
           << "got " << got.DebugString() << ", want " << want.DebugString();
  }
  const size_t es = DTypeSize(want.dtype());
  const char* g = static_cast<const char*>(got.raw_data());
  const char* w = static_cast<const char*>(want.raw_data());
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < want.numel(); ++i) {
    if (std::memcmp(g + i * es, w + i * es, es) != 0) {
      if (first < 0) first = i;
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  std::ostringstream msg;
  msg << bad << " of " << want.numel() << " elements differ; first at " << first;
  if (want.dtype() == DType::kF32 || want.dtype() == DType::kBF16 || want.dtype() == DType::kF16) {
    msg << ": got " << GetValue(got, first) << " want " << GetValue(want, first);
  } else if (want.dtype() == DType::kI32) {
    msg << ": got " << got.data<int32_t>()[first] << " want " << want.data<int32_t>()[first];
  }
  return ::testing::AssertionFailure() << msg.str();
}

// The spacing of bf16 values at |v| (8 significant bits); 0 at 0.
inline double Bf16Ulp(double v) {
  if (v == 0.0 || !std::isfinite(v)) return 0.0;
  int e = 0;
  std::frexp(v, &e);  // |v| = f 2^e, f in [0.5, 1)
  return std::ldexp(1.0, e - 8);
}

// Per element: |got - want| <= abs + rel |want| + bf16_ulps ulp_bf16(max(|got|, |want|)) (the
// last term only for a bf16 `got`). NaN or Inf in `got` never passes.
struct Tolerance {
  double rel = 0.0;
  double abs = 0.0;
  double bf16_ulps = 0.0;
};
inline ::testing::AssertionResult Close(const Tensor& got, const Tensor& want, Tolerance tol) {
  if (got.numel() != want.numel()) {
    return ::testing::AssertionFailure()
           << "got " << got.DebugString() << ", want " << want.DebugString();
  }
  const bool bf16 = got.dtype() == DType::kBF16;
  int64_t bad = 0;
  double worst = 0.0;
  std::ostringstream first;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double g = GetValue(got, i), w = GetValue(want, i);
    const double limit =
        tol.abs + tol.rel * std::fabs(w) +
        (bf16 ? tol.bf16_ulps * Bf16Ulp(std::max(std::fabs(g), std::fabs(w))) : 0.0);
    const double err = std::fabs(g - w);
    if (!std::isfinite(g) || !(err <= limit)) {
      if (bad < 5)
        first << "\n  [" << i << "] got " << g << " want " << w << " (tol " << limit << ")";
      ++bad;
    } else if (limit > 0 && err / limit > worst) {
      worst = err / limit;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess() << "worst error/tolerance " << worst;
  return ::testing::AssertionFailure()
         << bad << " of " << want.numel() << " elements off" << first.str();
}

}  // namespace expertmesh::testing

#endif  // EXPERTMESH_TESTS_KERNELS_CUDA_OPS_OPS_TEST_UTIL_H_
