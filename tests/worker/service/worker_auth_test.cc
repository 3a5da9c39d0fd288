// Issue 15, finding 5: the Worker API asks every caller for the group's internal token
// (Submit, Abort and GetLoad; the health service stays open for the kubelet's probes), and the
// worker listens on loopback unless told otherwise.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/internal_token.h"
#include "expertmesh/internal/v1/worker.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/util/listening_sockets.h"
#include "tests/worker/serving/fake_step_engine.h"
#include "worker/service/worker_server.h"
#include "worker/serving/engine_loop.h"

namespace expertmesh::server {
namespace {

namespace api = ::expertmesh::internal::v1;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kToken[] = "group-token-0123456789abcdef";
constexpr char kRequestId[] = "rq-0123456789abcdef0123456789abcdef";

class WorkerAuthTest : public ::testing::Test {
 protected:
  void Start(InternalToken token, const std::string& host = "127.0.0.1") {
    std::unique_ptr<testing::FakeStepEngine> engine = testing::FakeStepEngine::Create({});
    ASSERT_NE(engine, nullptr);
    engine_ = engine.get();
    loop_ = std::make_unique<EngineLoop>(std::move(engine), EngineLoopOptions{});
    loop_->Start();
    WorkerServerOptions options;
    options.host = host;
    options.service.token = std::move(token);
    absl::StatusOr<std::unique_ptr<WorkerServer>> server =
        WorkerServer::Start(loop_.get(), options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = api::Worker::NewStub(channel_);
  }

  void StartWithToken() {
    absl::StatusOr<InternalToken> token = InternalToken::FromString(kToken);
    ASSERT_TRUE(token.ok()) << token.status();
    Start(*token);
  }

  void TearDown() override {
    server_.reset();
    loop_.reset();
  }

  // The three calls with `authorization` as metadata (none when empty): their statuses, and
  // the tokens Submit streamed.
  struct Calls {
    grpc::Status submit, abort, load;
    std::vector<int32_t> tokens;
  };
  Calls CallAll(const std::string& authorization) {
    Calls out;
    auto prepare = [&](grpc::ClientContext& c) {
      if (!authorization.empty()) c.AddMetadata("authorization", authorization);
    };
    api::SubmitRequest request;
    request.set_request_id(kRequestId);
    request.add_prompt_token_ids(1);
    request.add_prompt_token_ids(2);
    request.set_max_tokens(3);
    request.mutable_sampling()->set_top_p(1.0f);
    request.mutable_sampling()->set_repetition_penalty(1.0f);
    {
      grpc::ClientContext context;
      prepare(context);
      auto reader = stub_->Submit(&context, request);
      api::SubmitResponse response;
      while (reader->Read(&response)) {
        for (const api::GeneratedToken& t : response.tokens()) out.tokens.push_back(t.token_id());
      }
      out.submit = reader->Finish();
    }
    {
      grpc::ClientContext context;
      prepare(context);
      api::AbortRequest abort;
      abort.set_request_id(kRequestId);
      api::AbortResponse response;
      out.abort = stub_->Abort(&context, abort, &response);
    }
    {
      grpc::ClientContext context;
      prepare(context);
      api::LoadReport report;
      out.load = stub_->GetLoad(&context, api::GetLoadRequest(), &report);
    }
    return out;
  }

  testing::FakeStepEngine* engine_ = nullptr;
  std::unique_ptr<EngineLoop> loop_;
  std::unique_ptr<WorkerServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<api::Worker::Stub> stub_;
};

TEST_F(WorkerAuthTest, CallsWithoutTheTokenAreUnauthenticated) {
  StartWithToken();
  Calls calls = CallAll("");
  EXPECT_EQ(calls.submit.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(calls.abort.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(calls.load.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(calls.submit.error_message(), HasSubstr("missing internal token"));
  EXPECT_TRUE(calls.tokens.empty());
  EXPECT_EQ(engine_->RequestsAdded(), 0);
}

TEST_F(WorkerAuthTest, CallsWithAWrongTokenAreUnauthenticated) {
  StartWithToken();
  for (const std::string& wrong :
       {std::string("Bearer not-the-token"), absl::StrCat("Bearer ", kToken, "x"),
        absl::StrCat("Bearer ", std::string(kToken).substr(1)), std::string(kToken),
        absl::StrCat("Basic ", kToken)}) {
    Calls calls = CallAll(wrong);
    EXPECT_EQ(calls.submit.error_code(), grpc::StatusCode::UNAUTHENTICATED) << wrong;
    EXPECT_EQ(calls.abort.error_code(), grpc::StatusCode::UNAUTHENTICATED) << wrong;
    EXPECT_EQ(calls.load.error_code(), grpc::StatusCode::UNAUTHENTICATED) << wrong;
    EXPECT_TRUE(calls.tokens.empty()) << wrong;
    // Nothing about the real token in the answer.
    EXPECT_THAT(calls.submit.error_message(), Not(HasSubstr(kToken)));
  }
  EXPECT_EQ(engine_->RequestsAdded(), 0);
}

TEST_F(WorkerAuthTest, CallsWithTheTokenAreServed) {
  StartWithToken();
  Calls calls = CallAll(absl::StrCat("Bearer ", kToken));
  EXPECT_TRUE(calls.submit.ok()) << calls.submit.error_message();
  EXPECT_THAT(calls.tokens, ElementsAre(3, 4, 5));
  EXPECT_TRUE(calls.abort.ok()) << calls.abort.error_message();
  EXPECT_TRUE(calls.load.ok()) << calls.load.error_message();
  // The scheme is case-insensitive, as for API keys.
  EXPECT_TRUE(CallAll(absl::StrCat("bearer ", kToken)).load.ok());
}

TEST_F(WorkerAuthTest, HealthNeedsNoToken) {
  StartWithToken();
  auto health = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = health->Check(&context, grpc::health::v1::HealthCheckRequest(), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(WorkerAuthTest, WithoutATokenEveryCallerIsServedAsBefore) {
  Start(InternalToken());
  Calls calls = CallAll("");
  EXPECT_TRUE(calls.submit.ok()) << calls.submit.error_message();
  EXPECT_TRUE(calls.load.ok()) << calls.load.error_message();
}

// The default host is loopback: a worker reachable from other machines is asked for.
TEST(WorkerServerTest, ListensOnLoopbackByDefault) {
  std::unique_ptr<testing::FakeStepEngine> engine = testing::FakeStepEngine::Create({});
  EngineLoop loop(std::move(engine), EngineLoopOptions{});
  loop.Start();
  absl::StatusOr<std::unique_ptr<WorkerServer>> server = WorkerServer::Start(&loop, {});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_THAT(expertmesh::testing::ListeningAddresses((*server)->port()), ElementsAre("127.0.0.1"));
  server->reset();
  loop.Stop();
}

}  // namespace
}  // namespace expertmesh::server
