// Element types of tensors on disk (safetensors) and in memory, with the scalar conversions
// every module needs. bf16 and f16 are stored as raw 16-bit patterns; arithmetic happens in
// fp32 after conversion.
#ifndef EXPERTMESH_COMMON_DTYPE_H_
#define EXPERTMESH_COMMON_DTYPE_H_

#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace expertmesh {

enum class DType : uint8_t {
  kF32,
  kF16,
  kBF16,
  kF8E4M3,  // OCP float8 e4m3fn (no infinities, one NaN pattern per sign), as in DeepSeek-V3
  kF64,
  kI64,
  kI32,
  kI16,
  kI8,
  kU8,
  kBool,
  // 4-bit integer weights (0..15), two per byte, in the CPU kernels' unit layout
  // (kernels/q4_layout.h), always with group scales attached (kernels::BlockScales): value =
  // (q - zero point) * scale. An in-memory format only: checkpoints store int4 in their own
  // packings (compressed-tensors, GPTQ), which the weight loader repacks into this one.
  kQ4,
};

// Bytes per element; 0 for kQ4, whose elements are half a byte (use DTypeBytes).
constexpr size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF64:
    case DType::kI64:
      return 8;
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
    case DType::kI16:
      return 2;
    case DType::kF8E4M3:
    case DType::kI8:
    case DType::kU8:
    case DType::kBool:
      return 1;
    case DType::kQ4:
      return 0;
  }
  return 0;
}

// Bytes that `count` elements occupy (kQ4: two per byte, an odd count rounded up).
constexpr size_t DTypeBytes(DType dtype, int64_t count) {
  if (dtype == DType::kQ4) return static_cast<size_t>((count + 1) / 2);
  return static_cast<size_t>(count) * DTypeSize(dtype);
}

// The safetensors spelling: "F32", "BF16", "F8_E4M3", ...
std::string_view DTypeName(DType dtype);

// Parses the safetensors spelling; nullopt for names expertmesh does not handle.
std::optional<DType> DTypeFromName(std::string_view name);

// bf16 <-> fp32. The conversion to bf16 rounds to nearest even, as PyTorch does; NaN stays NaN.
inline float Bf16ToFloat(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}
inline uint16_t FloatToBf16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

// IEEE half <-> fp32 (round to nearest even).
float F16ToFloat(uint16_t bits);
uint16_t FloatToF16(float value);

// float8 e4m3fn -> fp32 (exact).
float F8E4M3ToFloat(uint8_t bits);
// fp32 -> float8 e4m3fn, round to nearest even; magnitudes past the largest finite value (448)
// saturate to +-448, NaN becomes the NaN pattern (0x7f with the sign).
uint8_t FloatToF8E4M3(float value);

}  // namespace expertmesh

#endif  // EXPERTMESH_COMMON_DTYPE_H_
