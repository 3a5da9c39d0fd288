#include "kernels/cuda/device_info.h"

#include "gtest/gtest.h"

namespace expertmesh::cuda {
namespace {

TEST(CudaDeviceInfoTest, LinkedLibrariesReportVersions) {
  // Works without a GPU: both are answered by the libraries themselves.
  EXPECT_NE(NcclVersion(), "unknown");
  EXPECT_NE(CudaRuntimeVersion(), "unknown");
}

TEST(CudaDeviceInfoTest, ListsDevicesWithSaneProperties) {
  auto devices = ListDevices();
  if (!devices.ok()) GTEST_SKIP() << "no GPU on this machine: " << devices.status().message();
  ASSERT_FALSE(devices->empty());
  for (const DeviceInfo& device : *devices) {
    EXPECT_FALSE(device.name.empty());
    EXPECT_GE(device.compute_capability_major, 7) << device.name;
    EXPECT_GT(device.total_memory_bytes, 1ull << 30) << device.name;
    EXPECT_GT(device.multiprocessors, 0) << device.name;
  }
}

}  // namespace
}  // namespace expertmesh::cuda
