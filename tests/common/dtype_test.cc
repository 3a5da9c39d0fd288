#include "common/dtype.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace expertmesh {
namespace {

TEST(DTypeTest, NamesRoundTrip) {
  for (DType dtype :
       {DType::kF32, DType::kF16, DType::kBF16, DType::kF8E4M3, DType::kF64, DType::kI64,
        DType::kI32, DType::kI16, DType::kI8, DType::kU8, DType::kBool}) {
    auto parsed = DTypeFromName(DTypeName(dtype));
    ASSERT_TRUE(parsed.has_value()) << DTypeName(dtype);
    EXPECT_EQ(*parsed, dtype);
  }
  EXPECT_FALSE(DTypeFromName("F4").has_value());
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kF8E4M3), 1u);
}

TEST(DTypeTest, Bf16RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  // 1 + 2^-8 lies exactly between two bf16 values; ties go to the even mantissa (1.0).
  EXPECT_EQ(FloatToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  // 1 + 3 * 2^-8 ties between 1+2^-7 (odd) and 1+2^-6 (even).
  EXPECT_EQ(FloatToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_FLOAT_EQ(Bf16ToFloat(0xc040), -3.0f);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(DTypeTest, F16ConversionsMatchIeee) {
  EXPECT_EQ(FloatToF16(1.0f), 0x3c00);
  EXPECT_EQ(FloatToF16(-2.0f), 0xc000);
  EXPECT_EQ(FloatToF16(65504.0f), 0x7bff);
  EXPECT_EQ(FloatToF16(1e6f), 0x7c00);
  EXPECT_EQ(FloatToF16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_FLOAT_EQ(F16ToFloat(0x3555), 0.333251953125f);
  EXPECT_FLOAT_EQ(F16ToFloat(0x0001), std::ldexp(1.0f, -24));
  for (uint32_t bits = 0; bits < 0x7c00; ++bits) {
    ASSERT_EQ(FloatToF16(F16ToFloat(static_cast<uint16_t>(bits))), bits) << bits;
  }
}

TEST(DTypeTest, F8E4M3DecodesKnownValues) {
  EXPECT_FLOAT_EQ(F8E4M3ToFloat(0x38), 1.0f);
  EXPECT_FLOAT_EQ(F8E4M3ToFloat(0x7e), 448.0f);  // largest finite
  EXPECT_FLOAT_EQ(F8E4M3ToFloat(0xfe), -448.0f);
  EXPECT_FLOAT_EQ(F8E4M3ToFloat(0x01), std::ldexp(1.0f, -9));
  EXPECT_TRUE(std::isnan(F8E4M3ToFloat(0x7f)));
}

TEST(DTypeTest, FloatToF8E4M3RoundTripsEveryValueAndRoundsToNearestEven) {
  for (int b = 0; b < 256; ++b) {
    const uint8_t bits = static_cast<uint8_t>(b);
    if ((bits & 0x7f) == 0x7f) {  // NaN
      EXPECT_EQ(FloatToF8E4M3(F8E4M3ToFloat(bits)) & 0x7f, 0x7f);
      continue;
    }
    EXPECT_EQ(FloatToF8E4M3(F8E4M3ToFloat(bits)), bits) << b;
    // Halfway to the next larger magnitude rounds to the even mantissa of the two.
    const uint8_t next = static_cast<uint8_t>(bits + 1);
    if ((bits & 0x7f) < 0x7e) {
      const float mid = 0.5f * (F8E4M3ToFloat(bits) + F8E4M3ToFloat(next));
      const uint8_t even = (bits & 1) == 0 ? bits : next;
      EXPECT_EQ(FloatToF8E4M3(mid), even) << b;
      EXPECT_EQ(FloatToF8E4M3(std::nextafter(mid, 0.0f)), bits) << b;
    }
  }
  EXPECT_EQ(FloatToF8E4M3(1000.0f), 0x7e);  // saturates at 448
  EXPECT_EQ(FloatToF8E4M3(-449.0f), 0xfe);
  EXPECT_EQ(FloatToF8E4M3(1e-9f), 0x00);     // below half the smallest subnormal
  EXPECT_EQ(FloatToF8E4M3(0x1p-10f), 0x00);  // exactly half of 2^-9: ties to even (zero)
  EXPECT_EQ(FloatToF8E4M3(0x1.8p-10f), 0x01);
}

}  // namespace
}  // namespace expertmesh
