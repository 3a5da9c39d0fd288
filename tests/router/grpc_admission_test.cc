// Issue 15, finding 8: gRPC Generate runs on a bounded pool and is admitted before it is
// tokenized; a flood is refused with RESOURCE_EXHAUSTED instead of one thread per call.

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "tests/router/grpc_call.h"
#include "tests/router/router_fixture.h"

namespace expertmesh::router::testing {
namespace {

namespace pb = ::expertmesh::v1;

class GrpcAdmissionTest : public RouterFixture {};

// Before: the call was tokenized and validated first, so a full server still spent that work
// on it (and answered NOT_FOUND here); now a full server refuses it before looking at it.
TEST_F(GrpcAdmissionTest, AdmissionComesBeforeTokenizing) {
  StartWorkers(1);
  workers_[0]->SetTokenDelay(absl::Milliseconds(50));
  StartRouter([](RouterServerOptions& o) {
    o.core.max_active = 1;
    o.core.max_queued = 0;
  });
  std::unique_ptr<pb::Inference::Stub> stub = Grpc();
  pb::GenerateRequest busy;
  busy.set_text("keep the only slot busy");
  busy.mutable_stop()->set_max_tokens(40);
  GenerateCall first;
  std::thread holder([&] { first = RunGenerate(*stub, busy); });
  ASSERT_TRUE(
      workers_[0]->WaitFor([](const FakeWorker& w) { return w.active() == 1; }, absl::Seconds(10)));
  pb::GenerateRequest unknown_model;
  unknown_model.set_model("nope");
  unknown_model.set_text("never tokenized");
  GenerateCall refused = RunGenerate(*stub, unknown_model);
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << refused.status.error_message();
  holder.join();
  EXPECT_TRUE(first.status.ok()) << first.status.error_message();
  // With the slot free again the same call gets as far as validation.
  EXPECT_EQ(RunGenerate(*stub, unknown_model).status.error_code(), grpc::StatusCode::NOT_FOUND);
}

// A flood ends in answers, every call either served or refused at once; the producers it may
// start are bounded by admission's capacity (common/bounded_executor.h, tested in tests/common).
TEST_F(GrpcAdmissionTest, FloodIsServedOrRefused) {
  StartWorkers(1);
  workers_[0]->SetTokenDelay(absl::Milliseconds(20));
  StartRouter([](RouterServerOptions& o) {
    o.core.max_active = 2;
    o.core.max_queued = 2;
  });
  std::unique_ptr<pb::Inference::Stub> stub = Grpc();
  pb::GenerateRequest req;
  req.set_text("flood the router with calls");
  req.mutable_stop()->set_max_tokens(10);
  constexpr int kCalls = 30;
  std::vector<GenerateCall> calls(kCalls);
  std::vector<std::thread> clients;
  for (int i = 0; i < kCalls; ++i) {
    clients.emplace_back([&, i] { calls[i] = RunGenerate(*stub, req); });
  }
  for (std::thread& t : clients) t.join();
  int ok = 0, exhausted = 0;
  for (const GenerateCall& c : calls) {
    ok += c.status.ok() ? 1 : 0;
    exhausted += c.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ? 1 : 0;
  }
  EXPECT_GE(ok, 2);
  EXPECT_GT(exhausted, 0);
  EXPECT_EQ(ok + exhausted, kCalls);
}

}  // namespace
}  // namespace expertmesh::router::testing
