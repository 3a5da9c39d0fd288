// --device selection (backend_select.h) and the group's communicator choice
// (group_comm_select.h): every rule against synthetic machines, then what this machine reports.
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/worker/comm/fake_communicator.h"
#include "worker/startup/backend_select.h"
#include "worker/startup/group_comm_select.h"

namespace expertmesh::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const DeviceProbe kNoCuda{.cuda_built = false};
const DeviceProbe kCudaNoGpu{.cuda_built = true,
                             .gpu_count = 0,
                             .no_gpu_reason = "cudaGetDeviceCount: cudaErrorInsufficientDriver"};
// A GPU machine whose runtime cannot use its GPUs (a driver older than the runtime).
const DeviceProbe kCudaBrokenDriver{
    .cuda_built = true,
    .gpu_count = 0,
    .no_gpu_reason = "cudaGetDeviceCount: cudaErrorInsufficientDriver",
    .nvidia_driver_loaded = true};
const DeviceProbe kCudaEightGpus{.cuda_built = true, .gpu_count = 8};

TEST(ChooseDeviceTest, CpuIsAlwaysTheCpu) {
  for (const DeviceProbe& probe : {kNoCuda, kCudaNoGpu, kCudaEightGpus}) {
    absl::StatusOr<DeviceChoice> choice = ChooseDevice({.device = "cpu"}, probe);
    ASSERT_TRUE(choice.ok()) << choice.status();
    EXPECT_EQ(choice->kind, BackendKind::kCpu);
  }
}

TEST(ChooseDeviceTest, AutoFallsBackToTheCpuAndSaysWhy) {
  absl::StatusOr<DeviceChoice> not_built = ChooseDevice({.device = "auto"}, kNoCuda);
  ASSERT_TRUE(not_built.ok()) << not_built.status();
  EXPECT_EQ(not_built->kind, BackendKind::kCpu);
  EXPECT_THAT(not_built->reason, HasSubstr("no CUDA backend"));

  absl::StatusOr<DeviceChoice> no_gpu = ChooseDevice({.device = "auto"}, kCudaNoGpu);
  ASSERT_TRUE(no_gpu.ok()) << no_gpu.status();
  EXPECT_EQ(no_gpu->kind, BackendKind::kCpu);
  EXPECT_THAT(no_gpu->reason, HasSubstr("running on the CPU"));
}

TEST(ChooseDeviceTest, AutoWithoutADriverIsAnInfoLineWithoutTheRuntimeError) {
  // No NVIDIA driver: the ordinary CPU machine. The runtime's error code would read as a
  // failure to a new user, so the line says where it runs instead.
  absl::StatusOr<DeviceChoice> no_gpu = ChooseDevice({.device = "auto"}, kCudaNoGpu);
  ASSERT_TRUE(no_gpu.ok()) << no_gpu.status();
  EXPECT_FALSE(no_gpu->warn);
  EXPECT_THAT(no_gpu->reason, Not(HasSubstr("cudaError")));
  EXPECT_THAT(no_gpu->reason, HasSubstr("no GPU on this machine"));

  // A loaded driver that the runtime cannot use is a misconfigured GPU machine: a warning with
  // the runtime's reason.
  absl::StatusOr<DeviceChoice> broken = ChooseDevice({.device = "auto"}, kCudaBrokenDriver);
  ASSERT_TRUE(broken.ok()) << broken.status();
  EXPECT_EQ(broken->kind, BackendKind::kCpu);
  EXPECT_TRUE(broken->warn);
  EXPECT_THAT(broken->reason, HasSubstr("cudaErrorInsufficientDriver"));
  EXPECT_THAT(broken->reason, HasSubstr("running on the CPU"));

  // A CPU-only build is never a warning.
  absl::StatusOr<DeviceChoice> not_built = ChooseDevice({.device = "auto"}, kNoCuda);
  ASSERT_TRUE(not_built.ok()) << not_built.status();
  EXPECT_FALSE(not_built->warn);
}

TEST(ChooseDeviceTest, AutoPicksCudaWhenBuiltAndAGpuIsVisible) {
  absl::StatusOr<DeviceChoice> choice = ChooseDevice({.device = "auto"}, kCudaEightGpus);
  ASSERT_TRUE(choice.ok()) << choice.status();
  EXPECT_EQ(choice->kind, BackendKind::kCuda);
  EXPECT_EQ(choice->cuda_device, 0);
}

TEST(ChooseDeviceTest, CudaWithoutTheBackendBuiltInNamesTheBuild) {
  absl::StatusOr<DeviceChoice> choice = ChooseDevice({.device = "cuda"}, kNoCuda);
  EXPECT_EQ(choice.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(choice.status().message(), HasSubstr("built without the CUDA backend"));
  EXPECT_THAT(choice.status().message(), HasSubstr("EXPERTMESH_CUDA"));
}

TEST(ChooseDeviceTest, CudaWithoutAGpuNamesTheDriversReason) {
  absl::StatusOr<DeviceChoice> choice = ChooseDevice({.device = "cuda"}, kCudaNoGpu);
  EXPECT_EQ(choice.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(choice.status().message(), HasSubstr("no usable GPU"));
  EXPECT_THAT(choice.status().message(), HasSubstr("cudaErrorInsufficientDriver"));
}

TEST(ChooseDeviceTest, TheGpuIsTheLocalRankOrTheFlagWrappedOntoTheVisibleOnes) {
  struct Case {
    int cuda_device, local_rank, gpus, expected;
  };
  for (const Case& c : {Case{-1, 0, 8, 0}, Case{-1, 5, 8, 5}, Case{-1, 9, 8, 1}, Case{3, 5, 8, 3},
                        Case{10, 0, 8, 2}, Case{1, 0, 1, 0}, Case{-1, 1, 1, 0}}) {
    absl::StatusOr<DeviceChoice> choice =
        ChooseDevice({.device = "cuda", .cuda_device = c.cuda_device, .local_rank = c.local_rank},
                     {.cuda_built = true, .gpu_count = c.gpus});
    ASSERT_TRUE(choice.ok()) << choice.status();
    EXPECT_EQ(choice->kind, BackendKind::kCuda);
    EXPECT_EQ(choice->cuda_device, c.expected)
        << "--cuda-device " << c.cuda_device << ", local rank " << c.local_rank << ", " << c.gpus
        << " GPUs";
  }
}

TEST(ChooseDeviceTest, BadFlagsAreInvalidArguments) {
  EXPECT_EQ(ChooseDevice({.device = "gpu"}, kCudaEightGpus).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChooseDevice({.device = "cuda", .cuda_device = -2}, kCudaEightGpus).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ChooseDevice({.device = "gpu"}, kNoCuda).status().message(),
              HasSubstr("cpu, cuda or auto"));
}

TEST(ChooseGroupCommTest, NcclOnlyWhenEveryRankHasItsOwnGpu) {
  const std::vector<std::string> own = {"GPU-a", "GPU-b", "GPU-c", "GPU-d"};
  EXPECT_EQ(ChooseGroupComm(own, /*nccl_built=*/true).kind, CommKind::kNccl);
  EXPECT_EQ(ChooseGroupComm(own, /*nccl_built=*/false).kind, CommKind::kHost);

  // --ranks-per-pod 2 on one GPU: both ranks wrap onto it.
  const std::vector<std::string> shared = {"GPU-a", "GPU-a"};
  const CommChoice s = ChooseGroupComm(shared, true);
  EXPECT_EQ(s.kind, CommKind::kHost);
  EXPECT_THAT(s.reason, HasSubstr("ranks 0 and 1 share GPU GPU-a"));

  const std::vector<std::string> mixed = {"GPU-a", "", "GPU-c"};
  const CommChoice m = ChooseGroupComm(mixed, true);
  EXPECT_EQ(m.kind, CommKind::kHost);
  EXPECT_THAT(m.reason, HasSubstr("rank 1 runs on the CPU"));

  const std::vector<std::string> cpus = {"", ""};
  EXPECT_EQ(ChooseGroupComm(cpus, true).kind, CommKind::kHost);
  const std::vector<std::string> one = {"GPU-a"};
  EXPECT_EQ(ChooseGroupComm(one, true).kind, CommKind::kHost);
}

TEST(CpuThreadsForRankTest, RanksOnOneHostShareItsCores) {
  EXPECT_EQ(CpuThreadsForRank(0, 1, 16), 0);  // alone: all cores, as before
  EXPECT_EQ(CpuThreadsForRank(0, 2, 2), 1);
  EXPECT_EQ(CpuThreadsForRank(0, 2, 16), 8);
  EXPECT_EQ(CpuThreadsForRank(0, 3, 16), 5);
  EXPECT_EQ(CpuThreadsForRank(0, 4, 2), 1);  // never 0 threads
  EXPECT_EQ(CpuThreadsForRank(2, 2, 2), 2);  // --threads wins
  EXPECT_GE(AvailableCores(), 1);
}

TEST(ThisMachineTest, ProbeAndAutoAgree) {
  const DeviceProbe probe = ProbeDevices();
  EXPECT_EQ(probe.cuda_built, EXPERTMESH_HAVE_CUDA != 0);
  if (probe.gpu_count == 0 && probe.cuda_built) {
    EXPECT_FALSE(probe.no_gpu_reason.empty());
  }
  absl::StatusOr<DeviceChoice> choice = ChooseDevice({.device = "auto"}, probe);
  ASSERT_TRUE(choice.ok()) << choice.status();
  const bool gpu = probe.cuda_built && probe.gpu_count > 0;
  EXPECT_EQ(choice->kind, gpu ? BackendKind::kCuda : BackendKind::kCpu) << choice->reason;
  absl::StatusOr<DeviceChoice> cuda = ChooseDevice({.device = "cuda"}, probe);
  EXPECT_EQ(cuda.ok(), gpu) << cuda.status();
}

TEST(ThisMachineTest, TheCpuChoiceBuildsTheCpuBackend) {
  absl::StatusOr<std::unique_ptr<kernels::Backend>> backend =
      CreateBackend({.kind = BackendKind::kCpu}, {.cpu_threads = 1});
  ASSERT_TRUE(backend.ok()) << backend.status();
  EXPECT_EQ((*backend)->device(), kernels::Device::kCpu);
}

// A group of CPU ranks agrees on the host communicator and forms no NCCL communicator.
TEST(SelectGroupCommTest, CpuRanksKeepTheHostCommunicator) {
  constexpr int kWorld = 3;
  std::vector<std::unique_ptr<comm::Communicator>> host =
      comm::CreateFakeGroup(kWorld, absl::Seconds(20));
  std::vector<absl::StatusOr<GroupComm>> results(kWorld);
  std::vector<std::thread> threads;
  for (int r = 0; r < kWorld; ++r) {
    threads.emplace_back([&, r] {
      results[r] = SelectGroupComm({.kind = BackendKind::kCpu}, *host[r], absl::Seconds(20));
    });
  }
  for (std::thread& t : threads) t.join();
  for (int r = 0; r < kWorld; ++r) {
    ASSERT_TRUE(results[r].ok()) << "rank " << r << ": " << results[r].status();
    EXPECT_EQ(results[r]->choice.kind, CommKind::kHost);
    EXPECT_THAT(results[r]->choice.reason, HasSubstr("rank 0 runs on the CPU"));
    EXPECT_EQ(results[r]->nccl, nullptr);
  }
}

}  // namespace
}  // namespace expertmesh::server
