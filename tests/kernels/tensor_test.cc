#include "kernels/tensor.h"

#include <cstdint>
#include <memory>

#include "gtest/gtest.h"

namespace expertmesh::kernels {
namespace {

TEST(Tensor, EmptyIsAlignedContiguousAndOwning) {
  absl::StatusOr<Tensor> t = Tensor::Empty(DType::kBF16, {3, 5, 7});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(t->defined());
  EXPECT_EQ(t->rank(), 3);
  EXPECT_EQ(t->numel(), 105);
  EXPECT_EQ(t->nbytes(), 210u);
  EXPECT_EQ(t->stride(0), 35);
  EXPECT_EQ(t->stride(1), 7);
  EXPECT_EQ(t->stride(-1), 1);
  EXPECT_EQ(t->dim(-1), 7);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t->raw_data()) % kCpuAlignment, 0u);
  EXPECT_EQ(t->DebugString(), "bf16[3, 5, 7]");
}

TEST(Tensor, ZerosAndCopiesShareData) {
  Tensor a = *Tensor::Zeros(DType::kF32, {4});
  for (int i = 0; i < 4; ++i) EXPECT_EQ(a.data<float>()[i], 0.0f);
  Tensor b = a;
  b.data<float>()[2] = 5.0f;
  EXPECT_EQ(a.data<float>()[2], 5.0f);
}

TEST(Tensor, ReshapeAndSliceAreViews) {
  Tensor a = *Tensor::Empty(DType::kF32, {6, 4});
  for (int i = 0; i < 24; ++i) a.data<float>()[i] = static_cast<float>(i);
  Tensor r = *a.Reshape({2, 3, 4});
  EXPECT_EQ(r.raw_data(), a.raw_data());
  Tensor s = *a.Slice(2, 5);
  EXPECT_EQ(s.dim(0), 3);
  EXPECT_EQ(s.data<float>()[0], 8.0f);
  EXPECT_FALSE(a.Reshape({5, 5}).ok());
  EXPECT_FALSE(a.Slice(4, 7).ok());
  EXPECT_FALSE(a.Slice(3, 2).ok());
  EXPECT_TRUE(a.Slice(6, 6).ok());
}

TEST(Tensor, ViewKeepsItsOwnerAlive) {
  auto owner = std::make_shared<std::vector<float>>(8, 1.5f);
  std::weak_ptr<std::vector<float>> watch = owner;
  Tensor v = *Tensor::View(owner->data(), DType::kF32, {2, 4}, Device::kCpu, owner);
  owner.reset();
  EXPECT_FALSE(watch.expired());
  EXPECT_EQ(v.data<float>()[7], 1.5f);
  v = Tensor();
  EXPECT_TRUE(watch.expired());
}

TEST(Tensor, BadShapesAreInvalidArgument) {
  EXPECT_EQ(Tensor::Empty(DType::kF32, {1, 2, 3, 4, 5, 6}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Tensor::Empty(DType::kF32, {2, -1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Tensor::View(nullptr, DType::kF32, {2}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Tensor::View(nullptr, DType::kF32, {0}).ok());
}

TEST(Tensor, UndefinedTensor) {
  Tensor t;
  EXPECT_FALSE(t.defined());
  EXPECT_EQ(t.numel(), 0);
  EXPECT_EQ(t.DebugString(), "undefined");
}

}  // namespace
}  // namespace expertmesh::kernels
