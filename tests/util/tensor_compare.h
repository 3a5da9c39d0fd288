// The one comparison helper for tensors in tests (kernels, backends, golden parity).
//
// TensorsClose(actual, expected, tolerance) checks, in order: dtype and shape (when comparing
// two tensors), NaN and infinity masks, every element within atol + rtol * |expected|, and the
// cosine similarity of the two as vectors. On failure it says which check failed and, for the
// element check, how many elements failed and the index and both values of the worst one.
// TensorsEqual is the bit-exact check for data movement (permutes, cache copies).
#ifndef EXPERTMESH_TESTS_UTIL_TENSOR_COMPARE_H_
#define EXPERTMESH_TESTS_UTIL_TENSOR_COMPARE_H_

#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/tensor.h"

namespace expertmesh::testing {

struct Tolerance {
  double atol = 1e-5;
  double rtol = 1e-5;
  double min_cosine = 0.0;  // 0 disables the cosine check
};

// Every element of a CPU tensor as a double (float dtypes and integer dtypes).
inline std::vector<double> ToDoubles(const kernels::Tensor& t) {
  std::vector<double> out(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) {
    switch (t.dtype()) {
      case DType::kF32:
        out[i] = t.data<float>()[i];
        break;
      case DType::kBF16:
        out[i] = Bf16ToFloat(t.data<uint16_t>()[i]);
        break;
      case DType::kF16:
        out[i] = F16ToFloat(t.data<uint16_t>()[i]);
        break;
      case DType::kF64:
        out[i] = t.data<double>()[i];
        break;
      case DType::kI32:
        out[i] = t.data<int32_t>()[i];
        break;
      case DType::kI64:
        out[i] = static_cast<double>(t.data<int64_t>()[i]);
        break;
      default:
        out[i] = std::nan("");
    }
  }
  return out;
}

// "[2, 0, 5]" for flat index i of a tensor with this shape.
inline std::string IndexString(std::span<const int64_t> shape, int64_t i) {
  std::vector<int64_t> idx(shape.size());
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    idx[d] = shape[d] == 0 ? 0 : i % shape[d];
    i = shape[d] == 0 ? 0 : i / shape[d];
  }
  std::ostringstream s;
  s << "[";
  for (size_t d = 0; d < idx.size(); ++d) s << (d ? ", " : "") << idx[d];
  s << "]";
  return s.str();
}

// Compares values (with `shape` for messages) against expected values.
inline ::testing::AssertionResult ValuesClose(std::span<const int64_t> shape,
                                              const std::vector<double>& actual,
                                              const std::vector<double>& expected,
                                              const Tolerance& tol) {
  if (actual.size() != expected.size()) {
    return ::testing::AssertionFailure()
           << "element counts differ: actual " << actual.size() << ", expected " << expected.size();
  }
  int64_t failures = 0, worst = -1;
  double worst_excess = 0.0, max_abs = 0.0, dot = 0.0, na = 0.0, ne = 0.0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double a = actual[i], e = expected[i];
    if (std::isnan(a) != std::isnan(e) || (std::isinf(e) && a != e) || (std::isinf(a) && a != e)) {
      return ::testing::AssertionFailure()
             << "NaN/inf mask differs at " << IndexString(shape, static_cast<int64_t>(i))
             << ": actual " << a << ", expected " << e;
    }
    if (std::isnan(a) || std::isinf(a)) continue;
    const double diff = std::fabs(a - e);
    max_abs = std::max(max_abs, diff);
    const double excess = diff - (tol.atol + tol.rtol * std::fabs(e));
    if (excess > 0) {
      ++failures;
      if (worst < 0 || excess > worst_excess) {
        worst = static_cast<int64_t>(i);
        worst_excess = excess;
      }
    }
    dot += a * e;
    na += a * a;
    ne += e * e;
  }
  const double cosine = (na == 0.0 && ne == 0.0) ? 1.0 : dot / std::sqrt(na * ne);
  if (failures > 0) {
    return ::testing::AssertionFailure()
           << failures << " of " << actual.size() << " elements exceed atol " << tol.atol
           << " + rtol " << tol.rtol << "; worst at " << IndexString(shape, worst) << ": actual "
           << actual[worst] << ", expected " << expected[worst] << " (|diff| "
           << std::fabs(actual[worst] - expected[worst]) << "); max |diff| " << max_abs
           << ", cosine " << cosine;
  }
  if (tol.min_cosine > 0.0 && !(cosine >= tol.min_cosine)) {
    return ::testing::AssertionFailure() << "cosine similarity " << cosine << " below "
                                         << tol.min_cosine << " (max |diff| " << max_abs << ")";
  }
  return ::testing::AssertionSuccess() << "max |diff| " << max_abs << ", cosine " << cosine;
}

inline ::testing::AssertionResult TensorsClose(const kernels::Tensor& actual,
                                               const std::vector<double>& expected,
                                               const Tolerance& tol) {
  return ValuesClose(actual.shape(), ToDoubles(actual), expected, tol);
}

inline ::testing::AssertionResult TensorsClose(const kernels::Tensor& actual,
                                               const kernels::Tensor& expected,
                                               const Tolerance& tol) {
  if (actual.dtype() != expected.dtype() || !actual.SameShape(expected)) {
    return ::testing::AssertionFailure()
           << "actual " << actual.DebugString() << " vs expected " << expected.DebugString();
  }
  return ValuesClose(actual.shape(), ToDoubles(actual), ToDoubles(expected), tol);
}

// Bit-exact equality of dtype, shape and bytes; names the first differing element.
inline ::testing::AssertionResult TensorsEqual(const kernels::Tensor& actual,
                                               const kernels::Tensor& expected) {
  if (actual.dtype() != expected.dtype() || !actual.SameShape(expected)) {
    return ::testing::AssertionFailure()
           << "actual " << actual.DebugString() << " vs expected " << expected.DebugString();
  }
  const size_t elem = DTypeSize(actual.dtype());
  const char* a = static_cast<const char*>(actual.raw_data());
  const char* e = static_cast<const char*>(expected.raw_data());
  for (int64_t i = 0; i < actual.numel(); ++i) {
    if (std::memcmp(a + i * elem, e + i * elem, elem) != 0) {
      const std::vector<double> av = ToDoubles(actual), ev = ToDoubles(expected);
      return ::testing::AssertionFailure()
             << "first difference at " << IndexString(actual.shape(), i) << ": actual " << av[i]
             << ", expected " << ev[i];
    }
  }
  return ::testing::AssertionSuccess();
}

// An output tensor with guard bytes on both sides, to catch kernels writing out of bounds.
class GuardedTensor {
 public:
  static constexpr size_t kGuardBytes = 256;
  static constexpr unsigned char kPattern = 0xA5;

  GuardedTensor(DType dtype, std::initializer_list<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    bytes_ = static_cast<size_t>(n) * DTypeSize(dtype);
    buffer_ = *kernels::Tensor::Empty(DType::kU8, {static_cast<int64_t>(bytes_ + 2 * kGuardBytes)});
    std::memset(buffer_.raw_data(), kPattern, bytes_ + 2 * kGuardBytes);
    tensor_ =
        *kernels::Tensor::View(static_cast<char*>(buffer_.raw_data()) + kGuardBytes, dtype, shape);
  }
  kernels::Tensor& tensor() { return tensor_; }
  // True when no byte outside the tensor was written.
  ::testing::AssertionResult GuardsIntact() const {
    const unsigned char* p = static_cast<const unsigned char*>(buffer_.raw_data());
    for (size_t i = 0; i < kGuardBytes; ++i) {
      if (p[i] != kPattern)
        return ::testing::AssertionFailure() << "front guard byte " << i << " written";
      if (p[kGuardBytes + bytes_ + i] != kPattern) {
        return ::testing::AssertionFailure() << "back guard byte " << i << " written";
      }
    }
    return ::testing::AssertionSuccess();
  }

 private:
  size_t bytes_ = 0;
  kernels::Tensor buffer_;
  kernels::Tensor tensor_;
};

}  // namespace expertmesh::testing

#endif  // EXPERTMESH_TESTS_UTIL_TENSOR_COMPARE_H_
