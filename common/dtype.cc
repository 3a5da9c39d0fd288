#include "common/dtype.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <utility>

namespace expertmesh {
namespace {

constexpr std::array<std::pair<DType, std::string_view>, 11> kNames = {{
    {DType::kF32, "F32"},
    {DType::kF16, "F16"},
    {DType::kBF16, "BF16"},
    {DType::kF8E4M3, "F8_E4M3"},
    {DType::kF64, "F64"},
    {DType::kI64, "I64"},
    {DType::kI32, "I32"},
    {DType::kI16, "I16"},
    {DType::kI8, "I8"},
    {DType::kU8, "U8"},
    {DType::kBool, "BOOL"},
}};

}  // namespace

std::string_view DTypeName(DType dtype) {
  if (dtype == DType::kQ4) return "Q4";  // not a safetensors dtype: DTypeFromName never gives it
  for (const auto& [value, name] : kNames) {
    if (value == dtype) return name;
  }
  return "UNKNOWN";
}

std::optional<DType> DTypeFromName(std::string_view name) {
  for (const auto& [value, spelling] : kNames) {
    if (spelling == name) return value;
  }
  return std::nullopt;
}

float F16ToFloat(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0) {
    // Zero or subnormal: value = mantissa * 2^-24.
    float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) {
    return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  }
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

uint16_t FloatToF16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs_bits = bits & 0x7fffffffu;
  if (abs_bits > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (abs_bits >= 0x477ff000u) return sign | 0x7c00u;  // overflow (incl. rounding) -> inf
  if (abs_bits < 0x38800000u) {
    // Subnormal or zero in half: round |value| / 2^-24 to nearest even integer.
    float scaled = std::ldexp(std::bit_cast<float>(abs_bits), 24);
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));
  }
  uint32_t rebased = abs_bits - (112u << 23);
  uint32_t rounding = 0xfffu + ((rebased >> 13) & 1u);
  return sign | static_cast<uint16_t>((rebased + rounding) >> 13);
}

uint8_t FloatToF8E4M3(float value) {
  const uint8_t sign = std::signbit(value) ? 0x80u : 0x00u;
  if (std::isnan(value)) return sign | 0x7fu;
  const float a = std::fabs(value);
  if (a >= 448.0f) return sign | 0x7eu;  // saturate at the largest finite value
  // The e4m3 grid around a: exponent e (normal for a >= 2^-6, else the subnormal step 2^-9),
  // 3 mantissa bits, so the step is 2^(e-3); rint rounds half to even.
  int e = 0;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1): the leading bit is 2^(e-1)
  const int exponent = std::max(e - 1, -6);
  const float step = std::ldexp(1.0f, exponent - 3);
  const float q = std::rint(a / step) * step;  // may round up into the next binade
  if (q == 0.0f) return sign;
  int qe = 0;
  std::frexp(q, &qe);
  const int biased = std::max(qe - 1, -6) + 7;
  const bool subnormal = q < 0x1p-6f;
  const uint32_t mantissa =
      subnormal ? static_cast<uint32_t>(q / 0x1p-9f)
                : static_cast<uint32_t>((q / std::ldexp(1.0f, qe - 1) - 1.0f) * 8.0f);
  return sign | static_cast<uint8_t>(((subnormal ? 0 : biased) << 3) | mantissa);
}

float F8E4M3ToFloat(uint8_t bits) {
  const bool negative = bits & 0x80u;
  const uint32_t exponent = (bits >> 3) & 0xfu;
  const uint32_t mantissa = bits & 0x7u;
  float magnitude;
  if (exponent == 0xf && mantissa == 0x7) {
    magnitude = std::nanf("");
  } else if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -9);  // subnormal: m/8 * 2^-6
  } else {
    magnitude =
        std::ldexp(1.0f + static_cast<float>(mantissa) / 8.0f, static_cast<int>(exponent) - 7);
  }
  return negative ? -magnitude : magnitude;
}

}  // namespace expertmesh
