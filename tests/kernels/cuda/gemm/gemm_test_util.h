// Shared pieces of the GEMM tests: seeded random tensors, the CPU reference with its error scale,
// and the comparison with the stated tolerances; and, for the quantized-weight launchers (fp8,
// q4), what their tests do alike: the backends, running every path on one set of arguments, the
// grouped cases' uneven expert rows, and the backend's ops in and out of a CUDA graph.
//
// Tolerance, per element, against the CPU backend's f32 result r (the same inputs, out f32):
//   |got - r| <= 1e-4 |r| + 2e-5 s  (+ 1 bf16 ulp of r for a bf16 output)
// where s = sum_k |x_k w_k| (+ |bias|), the CPU result on |x|, |W|, |bias|. The s term is the
// fp32 summation-order slack (two fp32 sums of K terms in different orders differ by a few
// 1e-7 s; tensor-core accumulation truncates, ~2e-6 s at K = 2048), so cancellation near zero
// cannot fail a correct kernel. A bf16 output is one rounding of the GPU's fp32 value, within
// half an ulp of it. NaN or Inf never passes (outputs are poisoned with NaN before each run, so
// an unwritten element fails too).
#ifndef EXPERTMESH_TESTS_KERNELS_CUDA_GEMM_GEMM_TEST_UTIL_H_
#define EXPERTMESH_TESTS_KERNELS_CUDA_GEMM_GEMM_TEST_UTIL_H_

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/backend/cuda_backend.h"
#include "kernels/cuda/backend/cuda_backend_impl.h"
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
    default:
      return std::string(DTypeName(d));
  }
}

// Uniform values in [-1, 1), rounded to the dtype (f32 or bf16).
inline Tensor RandomTensor(DType dtype, std::initializer_list<int64_t> shape, std::mt19937& rng) {
  Tensor t = *Tensor::Empty(dtype, shape);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
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

inline float ValueAt(const Tensor& t, int64_t i) {
  return t.dtype() == DType::kF32 ? t.data<float>()[i] : Bf16ToFloat(t.data<uint16_t>()[i]);
}

// x as f32 (exact for bf16). The CPU references of quantized weights run on f32 activations: with
// bf16 ones a CPU with AMX multiplies bf16-rounded weights on its tiles (bf16(q x s), 2^-9
// relative each: docs/fp8.md, docs/int4.md), which would make the reference, not the GPU, the
// rounded side; in fp32 every CPU kernel family multiplies the dequantized weight rounded once
// to f32.
inline Tensor WidenToF32(const Tensor& x) {
  if (x.dtype() == DType::kF32) return x;
  Tensor f = *Tensor::Empty(DType::kF32, x.shape());
  for (int64_t i = 0; i < x.numel(); ++i) f.data<float>()[i] = ValueAt(x, i);
  return f;
}

// |t|, same dtype (exact for f32 and bf16).
inline Tensor AbsTensor(const Tensor& t) {
  if (!t.defined()) return t;
  Tensor a = *Tensor::Empty(t.dtype(), t.shape());
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (t.dtype() == DType::kF32) {
      a.data<float>()[i] = std::fabs(t.data<float>()[i]);
    } else {
      a.data<uint16_t>()[i] = t.data<uint16_t>()[i] & 0x7fffu;
    }
  }
  return a;
}

// One bf16 ulp at |v| (8 significant bits).
inline double Bf16Ulp(double v) {
  int e = 0;
  std::frexp(v, &e);  // |v| = f 2^e, f in [0.5, 1)
  return std::ldexp(1.0, e - 8);
}

// Compares `got` (f32 or bf16) with the f32 reference `ref` under the tolerance above; `rows`
// limits the comparison to a set of rows when not empty ([rows, cols] layout).
// `extra` adds extra * s to each bound (a kernel that rounds its operands, e.g. fp8 weights
// dequantized to bf16: 2^-9 s).
inline ::testing::AssertionResult GemmClose(const Tensor& got, const Tensor& ref,
                                            const Tensor& scale, const std::vector<bool>& rows = {},
                                            double extra = 0.0) {
  const int64_t numel = ref.numel();
  const int64_t cols = ref.rank() == 2 ? ref.dim(1) : numel;
  const bool bf16 = got.dtype() == DType::kBF16;
  int64_t bad = 0;
  double worst = 0.0;
  std::ostringstream first;
  for (int64_t i = 0; i < numel; ++i) {
    if (!rows.empty() && !rows[static_cast<size_t>(i / cols)]) continue;
    const double g = ValueAt(got, i);
    const double r = ref.data<float>()[i];
    const double s = scale.data<float>()[i];
    const double tol = 1e-4 * std::fabs(r) + (2e-5 + extra) * s + (bf16 ? Bf16Ulp(r) : 0.0) + 1e-30;
    const double err = std::fabs(g - r);
    if (!std::isfinite(g) || !(err <= tol)) {
      if (bad < 5) {
        first << "\n  [" << i / cols << ", " << i % cols << "] got " << g << " want " << r
              << " (tol " << tol << ", scale " << s << ")";
      }
      ++bad;
    } else if (err / tol > worst) {
      worst = err / tol;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess() << "worst error/tolerance " << worst;
  return ::testing::AssertionFailure() << bad << " of " << numel << " elements off" << first.str();
}

// ---- the quantized-weight launchers' tests (cuda_fp8_gemm_test, cuda_q4_gemm_test) ----

// The CPU backend (the reference) and the CUDA backend (PrepareWeight, the ops).
class QuantGemmFixture {
 protected:
  void Init() {
    cpu_ = std::move(*kernels::cpu::CpuBackend::Create({}));
    auto cuda = cuda::CudaBackend::Create({});
    ASSERT_TRUE(cuda.ok()) << cuda.status();
    gpu_ = std::move(*cuda);
  }

  std::unique_ptr<kernels::cpu::CpuBackend> cpu_;
  std::unique_ptr<cuda::CudaBackend> gpu_;
};

// A CUDA test (`Base`: CudaTest or CudaTestWithParam<P>) that skips visibly without a GPU and
// otherwise sets up `Fixture` (Init()) before each case.
template <typename Base, typename Fixture>
class CudaFixtureTest : public Base, public Fixture {
 protected:
  void SetUp() override {
    Base::SetUp();
    if (Base::IsSkipped()) return;
    Fixture::Init();
  }
};

// Runs every path of one launcher on `args` (x, out and the weights set): a path that cannot run
// these arguments must be refused (cudaErrorInvalidValue, nothing launched); every other one runs
// on out poisoned with NaN (so an unwritten element fails), with the error flags cleared before
// and none raised after, and `close(ran, got)` judges the output of the path that ran.
// `Launcher` says what the launcher is:
//   using Args, Path;  static constexpr Path kPaths[];  static const char* Name(Path);
//   static Path Planned(const Args&);  static cudaError_t Launch(const Args&);
// `configure(args, path)` sets what a path needs besides args.path before it is planned.
template <typename Launcher, typename Configure, typename Close>
void RunEveryPath(typename Launcher::Args args, const Tensor& out_device, uint32_t* flags,
                  Configure configure, Close close) {
  using Path = typename Launcher::Path;
  for (Path path : Launcher::kPaths) {
    SCOPED_TRACE(std::string("path ") + Launcher::Name(path));
    args.path = path;
    configure(args, path);
    if (::testing::Test::HasFatalFailure()) return;
    const Path planned = Launcher::Planned(args);
    if (planned == Path::kAuto) {
      EXPECT_EQ(Launcher::Launch(args), cudaErrorInvalidValue);
      continue;
    }
    ASSERT_EQ(cudaMemset(args.out, 0xff, out_device.nbytes()), cudaSuccess);  // NaN poison
    if (flags != nullptr) {
      ASSERT_EQ(cudaMemset(flags, 0, sizeof(uint32_t)), cudaSuccess);
    }
    ASSERT_EQ(Launcher::Launch(args), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    if (flags != nullptr) {
      uint32_t v = 0;
      ASSERT_EQ(cudaMemcpy(&v, flags, sizeof(v), cudaMemcpyDeviceToHost), cudaSuccess);
      EXPECT_EQ(v, 0u);
    }
    EXPECT_TRUE(close(planned, ToHost(out_device))) << "ran " << Launcher::Name(planned);
  }
}

// The arguments Fp8GemmArgs and Q4GemmArgs name alike: x and out (device tensors and their
// dtypes) and the sizes; the weights, a bias and the experts are the caller's to set.
template <typename Args>
Args ActivationArgs(const Tensor& x, DType x_dtype, const Tensor& out, DType out_dtype, int64_t m,
                    int64_t k, int64_t n) {
  Args a;
  a.x = x.raw_data();
  a.x_dtype = x_dtype;
  a.out = out.raw_data();
  a.out_dtype = out_dtype;
  a.m = m;
  a.k = k;
  a.n = n;
  return a;
}

// Rows per expert of a grouped case, as offsets (experts + 1 of them): top_k distinct experts per
// token, expert e drawn with weight 1 / (e + 1), so the counts are uneven; with half_idle, odd
// experts get no rows (other ranks' experts), and some even ones none by chance.
inline std::vector<int32_t> UnevenExpertOffsets(int64_t tokens, int experts, int top_k,
                                                bool half_idle, std::mt19937& rng) {
  std::vector<double> odds(experts, 0.0);
  for (int e = 0; e < experts; ++e) {
    if (!half_idle || e % 2 == 0) odds[e] = 1.0 / (e + 1);
  }
  std::discrete_distribution<int> pick(odds.begin(), odds.end());
  std::vector<int32_t> counts(experts, 0);
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<bool> taken(experts, false);
    for (int j = 0; j < top_k;) {
      const int e = pick(rng);
      if (taken[e]) continue;
      taken[e] = true;
      ++counts[e];
      ++j;
    }
  }
  std::vector<int32_t> offsets(experts + 1, 0);
  std::partial_sum(counts.begin(), counts.end(), offsets.begin() + 1);
  return offsets;
}

// The offsets as the host tensor the backends take (kI32, experts + 1).
inline Tensor OffsetsTensor(const std::vector<int32_t>& offsets) {
  Tensor off = *Tensor::Empty(DType::kI32, {static_cast<int64_t>(offsets.size())});
  std::copy(offsets.begin(), offsets.end(), off.data<int32_t>());
  return off;
}

// A device copy of a per-expert array (weight pointers, scale or group descriptors).
template <typename T>
void UploadArray(const std::vector<T>& v, cuda::DeviceBuffer* out) {
  *out = *cuda::DeviceBuffer::Allocate(v.size() * sizeof(T));
  ASSERT_EQ(cudaMemcpy(out->get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice),
            cudaSuccess);
}

// Backend::Linear(x, w) and MoeGroupedLinear(xg, off, device_experts) on `gpu`, bf16 in and out,
// eagerly, captured into a CUDA graph and replayed from it: each run's outputs against ref /
// scale and gref / gscale. `w` is the host weight; `device_experts` are already prepared.
inline void ExpectOpsMatchInAndOutOfGraphs(cuda::CudaBackend& gpu, const Tensor& x, const Tensor& w,
                                           const Tensor& xg, const Tensor& off,
                                           const std::vector<Tensor>& device_experts,
                                           const Tensor& ref, const Tensor& scale,
                                           const Tensor& gref, const Tensor& gscale) {
  const int64_t tokens = x.dim(0), in = x.dim(1), out = ref.dim(1), grouped = xg.dim(0);
  Tensor dw = *gpu.PrepareWeight(w);
  Tensor dx = *gpu.Allocate(DType::kBF16, {tokens, in});
  Tensor dxg = *gpu.Allocate(DType::kBF16, {grouped, in});
  Tensor doff = *gpu.Allocate(DType::kI32, {off.numel()});
  Tensor dout = *gpu.Allocate(DType::kBF16, {tokens, out});
  Tensor dgout = *gpu.Allocate(DType::kBF16, {grouped, out});
  ASSERT_TRUE(gpu.CopyFromHost(x.raw_data(), dx).ok());
  ASSERT_TRUE(gpu.CopyFromHost(xg.raw_data(), dxg).ok());
  ASSERT_TRUE(gpu.CopyFromHost(off.raw_data(), doff).ok());
  auto body = [&]() -> absl::Status {
    if (absl::Status s = gpu.Linear(dx, dw, Tensor(), dout); !s.ok()) return s;
    return gpu.MoeGroupedLinear(dxg, doff, device_experts, dgout);
  };
  for (int run = 0; run < 3; ++run) {  // eager, capture, replay
    SCOPED_TRACE("run " + std::to_string(run));
    ASSERT_TRUE(gpu.Zero(dout).ok());
    ASSERT_TRUE(gpu.Zero(dgout).ok());
    const absl::Status s = run == 0 ? body() : gpu.CaptureOrReplay(7, body);
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_TRUE(gpu.Synchronize().ok());
    Tensor got = *Tensor::Empty(DType::kBF16, {tokens, out});
    Tensor ggot = *Tensor::Empty(DType::kBF16, {grouped, out});
    ASSERT_TRUE(gpu.CopyToHost(dout, got.raw_data()).ok());
    ASSERT_TRUE(gpu.CopyToHost(dgout, ggot.raw_data()).ok());
    EXPECT_TRUE(GemmClose(got, ref, scale));
    EXPECT_TRUE(GemmClose(ggot, gref, gscale));
  }
}

}  // namespace expertmesh::testing

#endif  // EXPERTMESH_TESTS_KERNELS_CUDA_GEMM_GEMM_TEST_UTIL_H_
