// The Worker gRPC service over the engine loop, in process, against FakeStepEngine (real
// scheduler and KV accounting, scripted tokens).
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "expertmesh/internal/v1/worker.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/worker/serving/fake_step_engine.h"
#include "worker/service/worker_server.h"
#include "worker/serving/engine_loop.h"

namespace expertmesh::server {
namespace {

namespace api = ::expertmesh::internal::v1;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using testing::FakeEngineConfig;
using testing::FakeStepEngine;
using ::testing::HasSubstr;

struct StreamResult {
  std::vector<int32_t> tokens;
  api::StopReason stop = api::STOP_REASON_UNSPECIFIED;
  int messages = 0;
  uint32_t cached_prompt_tokens = 0;
  // Each message's scored prompt tokens.
  std::vector<std::vector<api::PromptTokenLogprob>> prompt_logprobs;
  grpc::Status status;
};

// The router-format id (model/request/request_id.h) a test names `name`; "" stays empty.
std::string RouterId(const std::string& name) {
  if (name.empty()) return name;
  return absl::StrFormat("rq-%016x%016x", std::hash<std::string>{}(name), name.size());
}

api::SubmitRequest MakeRequest(const std::string& id, std::vector<int32_t> prompt,
                               uint32_t max_tokens) {
  api::SubmitRequest request;
  request.set_request_id(RouterId(id));
  for (int32_t t : prompt) request.add_prompt_token_ids(t);
  request.set_max_tokens(max_tokens);
  request.mutable_sampling()->set_top_p(1.0f);
  request.mutable_sampling()->set_repetition_penalty(1.0f);
  return request;
}

// The tokens the fake model continues `prompt` with.
std::vector<int32_t> Expected(int32_t last, int n) {
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) out.push_back(last = testing::FakeNextToken(last, 1000));
  return out;
}

class WorkerServiceTest : public ::testing::Test {
 protected:
  void Start(FakeEngineConfig config = {}, EngineLoopOptions loop_options = {}) {
    std::unique_ptr<FakeStepEngine> engine = FakeStepEngine::Create(config);
    ASSERT_NE(engine, nullptr);
    engine_ = engine.get();
    loop_ = std::make_unique<EngineLoop>(std::move(engine), loop_options);
    loop_->Start();
    absl::StatusOr<std::unique_ptr<WorkerServer>> server =
        WorkerServer::Start(loop_.get(), {.host = "127.0.0.1", .port = 0});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_GT(server_->port(), 0);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = api::Worker::NewStub(channel_);
  }

  void TearDown() override {
    server_.reset();
    loop_.reset();
  }

  StreamResult Run(const api::SubmitRequest& request, grpc::ClientContext* context = nullptr) {
    grpc::ClientContext local;
    if (context == nullptr) context = &local;
    StreamResult result;
    std::unique_ptr<grpc::ClientReader<api::SubmitResponse>> reader =
        stub_->Submit(context, request);
    api::SubmitResponse response;
    while (reader->Read(&response)) {
      if (result.messages++ == 0) result.cached_prompt_tokens = response.cached_prompt_tokens();
      for (const api::GeneratedToken& t : response.tokens()) result.tokens.push_back(t.token_id());
      result.prompt_logprobs.emplace_back(response.prompt_logprobs().begin(),
                                          response.prompt_logprobs().end());
      if (response.stop_reason() != api::STOP_REASON_UNSPECIFIED)
        result.stop = response.stop_reason();
    }
    result.status = reader->Finish();
    return result;
  }

  api::LoadReport Load() {
    grpc::ClientContext context;
    api::LoadReport report;
    grpc::Status status = stub_->GetLoad(&context, api::GetLoadRequest(), &report);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return report;
  }

  // Polls GetLoad until `done` holds; false after 10 s.
  template <typename Pred>
  bool WaitForLoad(Pred done) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline) {
      if (done(Load())) return true;
      absl::SleepFor(absl::Milliseconds(1));
    }
    return false;
  }

  FakeStepEngine* engine_ = nullptr;
  std::unique_ptr<EngineLoop> loop_;
  std::unique_ptr<WorkerServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<api::Worker::Stub> stub_;
};

TEST_F(WorkerServiceTest, StreamsEveryTokenAndStopsAtMaxTokens) {
  Start();
  StreamResult r = Run(MakeRequest("a", {1, 2, 3}, 5));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_THAT(r.tokens, ElementsAreArray(Expected(3, 5)));
  EXPECT_EQ(r.stop, api::STOP_REASON_MAX_TOKENS);
  EXPECT_EQ(r.cached_prompt_tokens, 0u);
}

TEST_F(WorkerServiceTest, StopsAtEos) {
  Start();
  StreamResult r = Run(MakeRequest("a", {5, 997}, 10));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_THAT(r.tokens, ElementsAre(998, 999));
  EXPECT_EQ(r.stop, api::STOP_REASON_EOS);
}

TEST_F(WorkerServiceTest, SecondRunOfAPromptReportsCachedTokens) {
  Start();
  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  ASSERT_TRUE(Run(MakeRequest("a", prompt, 2)).status.ok());
  StreamResult r = Run(MakeRequest("b", prompt, 2));
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.cached_prompt_tokens, 8u);  // two full blocks of 4
  EXPECT_THAT(r.tokens, ElementsAreArray(Expected(10, 2)));
}

TEST_F(WorkerServiceTest, PromptLogprobsComeWithTheFirstMessageAndSkipTheCache) {
  Start({.max_batched_tokens = 4});  // the prompt is scored over several chunks
  const std::vector<int32_t> prompt = {1, 2, 3, 9, 5, 6, 7, 8, 9, 10};
  ASSERT_TRUE(Run(MakeRequest("warm", prompt, 2)).status.ok());
  api::SubmitRequest request = MakeRequest("scored", prompt, 3);
  request.set_prompt_logprobs(2);
  StreamResult r = Run(request);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.cached_prompt_tokens, 0u) << "cached blocks have no logits";
  ASSERT_GE(r.prompt_logprobs.size(), 1u);
  ASSERT_EQ(r.prompt_logprobs[0].size(), prompt.size() - 1);
  for (size_t m = 1; m < r.prompt_logprobs.size(); ++m) EXPECT_TRUE(r.prompt_logprobs[m].empty());
  for (size_t i = 1; i < prompt.size(); ++i) {
    const api::PromptTokenLogprob& got = r.prompt_logprobs[0][i - 1];
    const sampling::PromptLogprob want =
        testing::FakePromptLogprob(prompt[i - 1], prompt[i], 2, 1000);
    EXPECT_EQ(got.token_id(), prompt[i]);
    EXPECT_EQ(got.logprob(), want.logprob) << i;
    EXPECT_EQ(got.rank(), want.rank) << i;
    ASSERT_EQ(got.top_size(), 2);
    EXPECT_EQ(got.top(1).token_id(), want.top_logprobs[1].token);
  }
  EXPECT_EQ(r.prompt_logprobs[0][2].rank(), 6) << "9 after 3: 4 is likeliest, then 5..8";
  EXPECT_THAT(r.tokens, ElementsAreArray(Expected(10, 3)));

  api::SubmitRequest bad = MakeRequest("bad", prompt, 3);
  bad.set_prompt_logprobs(21);
  StreamResult refused = Run(bad);
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.status.error_message(), HasSubstr("prompt_logprobs"));
}

TEST_F(WorkerServiceTest, BadRequestsAreInvalidArgumentAndOthersKeepRunning) {
  Start();
  engine_->SetStepBudget(0);
  grpc::ClientContext good_context;
  StreamResult good;
  std::thread good_thread([&] { good = Run(MakeRequest("good", {1, 2, 3}, 6), &good_context); });
  ASSERT_TRUE(WaitForLoad(
      [](const api::LoadReport& r) { return r.running_requests() + r.queued_requests() == 1; }));

  struct Bad {
    api::SubmitRequest request;
    std::string message;
  };
  std::vector<Bad> bad;
  bad.push_back({MakeRequest("empty", {}, 4), "empty prompt"});
  bad.push_back({MakeRequest("vocab", {1, 5000}, 4), "5000"});
  bad.push_back({MakeRequest("zero", {1}, 0), "max_tokens"});
  bad.push_back({MakeRequest("", {1}, 4), "empty request id"});
  bad.push_back({MakeRequest("long", std::vector<int32_t>(600, 1), 4), "context"});
  api::SubmitRequest top_p = MakeRequest("topp", {1}, 4);
  top_p.mutable_sampling()->set_top_p(2.0f);
  bad.push_back({top_p, "top_p"});
  for (const Bad& b : bad) {
    StreamResult r = Run(b.request);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << b.request.request_id() << ": " << r.status.error_message();
    EXPECT_THAT(r.status.error_message(), HasSubstr(b.message)) << b.request.request_id();
    EXPECT_TRUE(r.tokens.empty());
  }

  engine_->SetStepBudget(std::nullopt);
  good_thread.join();
  ASSERT_TRUE(good.status.ok()) << good.status.error_message();
  EXPECT_THAT(good.tokens, ElementsAreArray(Expected(3, 6)));
  // The loop republishes its load after the step whose outputs ended the streams, so a client
  // can see its stream end a moment before the report shows the blocks free.
  EXPECT_TRUE(WaitForLoad([](const api::LoadReport& l) {
    return l.free_kv_blocks() == l.total_kv_blocks();
  })) << Load().DebugString();
}

TEST_F(WorkerServiceTest, DuplicateLiveIdIsAlreadyExists) {
  Start();
  engine_->SetStepBudget(0);
  grpc::ClientContext first_context;
  StreamResult first;
  std::thread t([&] { first = Run(MakeRequest("dup", {1, 2}, 3), &first_context); });
  ASSERT_TRUE(WaitForLoad([](const api::LoadReport& r) { return r.queued_requests() == 1; }));
  StreamResult second = Run(MakeRequest("dup", {1, 2}, 3));
  EXPECT_EQ(second.status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  engine_->SetStepBudget(std::nullopt);
  t.join();
  EXPECT_TRUE(first.status.ok());
  EXPECT_THAT(first.tokens, ElementsAreArray(Expected(2, 3)));
}

TEST_F(WorkerServiceTest, ClientCancelAbortsAndFreesBlocks) {
  Start();
  engine_->SetStepBudget(3);  // prefill + 2 decodes: exactly 3 tokens, then nothing
  const api::LoadReport idle = Load();
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<api::SubmitResponse>> reader =
      stub_->Submit(&context, MakeRequest("c", std::vector<int32_t>(30, 7), 100));
  int tokens = 0;
  api::SubmitResponse response;
  while (tokens < 3 && reader->Read(&response)) tokens += response.tokens_size();
  ASSERT_EQ(tokens, 3);
  api::LoadReport busy = Load();
  EXPECT_EQ(busy.running_requests(), 1u);
  EXPECT_LT(busy.free_kv_blocks(), idle.free_kv_blocks());

  context.TryCancel();
  while (reader->Read(&response)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitForLoad([&](const api::LoadReport& r) {
    return r.running_requests() == 0 && r.free_kv_blocks() == idle.free_kv_blocks();
  }));
  EXPECT_EQ(loop_->NumLive(), 0);
}

TEST_F(WorkerServiceTest, DeadlineAbortsAndFreesBlocks) {
  Start();
  engine_->SetStepBudget(1);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
  StreamResult r = Run(MakeRequest("d", std::vector<int32_t>(20, 3), 50), &context);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(r.tokens.size(), 1u);
  EXPECT_TRUE(WaitForLoad([](const api::LoadReport& r) {
    return r.running_requests() == 0 && r.queued_requests() == 0 &&
           r.free_kv_blocks() == r.total_kv_blocks();
  }));
}

TEST_F(WorkerServiceTest, AbortRpcEndsTheStreamWithAborted) {
  Start();
  engine_->SetStepBudget(2);
  StreamResult r;
  std::thread t([&] { r = Run(MakeRequest("x", {4, 5, 6}, 100)); });
  ASSERT_TRUE(WaitForLoad([](const api::LoadReport& l) { return l.running_requests() == 1; }));
  {
    grpc::ClientContext context;
    api::AbortRequest request;
    request.set_request_id(RouterId("x"));
    api::AbortResponse response;
    ASSERT_TRUE(stub_->Abort(&context, request, &response).ok());
    EXPECT_TRUE(response.aborted());
  }
  t.join();
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.stop, api::STOP_REASON_ABORTED);
  {
    grpc::ClientContext context;
    api::AbortRequest request;
    request.set_request_id(RouterId("x"));
    api::AbortResponse response;
    ASSERT_TRUE(stub_->Abort(&context, request, &response).ok());
    EXPECT_FALSE(response.aborted());
  }
  // The loop republishes its load after the step whose outputs ended the streams, so a client
  // can see its stream end a moment before the report shows the blocks free.
  EXPECT_TRUE(WaitForLoad([](const api::LoadReport& l) {
    return l.free_kv_blocks() == l.total_kv_blocks();
  })) << Load().DebugString();
}

TEST_F(WorkerServiceTest, LoadReportDescribesQueueKvAndPrefixes) {
  Start({.num_blocks = 64, .block_size = 4, .max_model_len = 128, .max_running = 2});
  api::LoadReport idle = Load();
  EXPECT_EQ(idle.total_kv_blocks(), 64u);
  EXPECT_EQ(idle.free_kv_blocks(), 64u);
  EXPECT_EQ(idle.kv_block_size(), 4u);
  EXPECT_EQ(idle.model(), "fake");
  EXPECT_EQ(idle.max_context_length(), 128u);
  EXPECT_EQ(idle.tp(), 1u);
  EXPECT_EQ(idle.ep(), 1u);
  EXPECT_EQ(idle.cached_prefix_hashes_size(), 0);

  engine_->SetStepBudget(0);
  std::vector<std::thread> threads;
  std::vector<StreamResult> results(4);
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      results[i] = Run(MakeRequest(absl::StrCat("r", i), {i, 11, 12, 13, 14, 15, 16, 17, 18}, 3));
    });
  }
  ASSERT_TRUE(WaitForLoad([&](const api::LoadReport& l) {
    return l.queued_requests() == 4 && engine_->RequestsAdded() == 4;
  }));
  engine_->AllowSteps(1);  // admits two (max_running); the other two wait
  EXPECT_TRUE(WaitForLoad([](const api::LoadReport& l) {
    return l.running_requests() == 2 && l.queued_requests() == 2;
  })) << Load().DebugString();
  api::LoadReport busy = Load();
  EXPECT_LT(busy.free_kv_blocks(), 64u);
  EXPECT_EQ(busy.cached_prefix_hashes_size(), 4);  // two full prompt blocks of each running one

  engine_->SetStepBudget(std::nullopt);
  for (std::thread& t : threads) t.join();
  for (const StreamResult& r : results) EXPECT_THAT(r.tokens, ElementsAreArray(Expected(18, 3)));
  // The streams end when their last token is sent; the loop publishes its load after the step,
  // so wait for the report to catch up instead of reading it at once.
  EXPECT_TRUE(WaitForLoad([](const api::LoadReport& l) {
    return l.running_requests() == 0 && l.queued_requests() == 0;
  })) << Load().DebugString();
  api::LoadReport after = Load();
  EXPECT_EQ(after.free_kv_blocks(), 64u);  // cached blocks are evictable, hence free
  EXPECT_GE(after.cached_prefix_hashes_size(), 8);
}

TEST_F(WorkerServiceTest, FullQueueIsResourceExhausted) {
  Start({}, {.max_queued = 2});
  engine_->SetStepBudget(0);  // nothing is ever scheduled: both stay waiting
  std::vector<std::thread> threads;
  std::vector<StreamResult> results(2);
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] { results[i] = Run(MakeRequest(absl::StrCat("q", i), {1}, 2)); });
  }
  ASSERT_TRUE(WaitForLoad([](const api::LoadReport& l) { return l.queued_requests() == 2; }));
  StreamResult over = Run(MakeRequest("over", {1}, 2));
  EXPECT_EQ(over.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(over.status.error_message(), HasSubstr("queue full"));
  engine_->SetStepBudget(std::nullopt);
  for (std::thread& t : threads) t.join();
  for (const StreamResult& r : results) {
    EXPECT_TRUE(r.status.ok());
    EXPECT_THAT(r.tokens, ElementsAre(2, 3));
  }
}

TEST_F(WorkerServiceTest, StepFailureFailsLiveStreamsAndTheWorkerRecovers) {
  Start();
  engine_->SetStepBudget(0);
  StreamResult r;
  std::thread t([&] { r = Run(MakeRequest("f", {1, 2}, 4)); });
  ASSERT_TRUE(WaitForLoad([](const api::LoadReport& l) { return l.queued_requests() == 1; }));
  engine_->FailNextStep(absl::InternalError("injected"));
  engine_->SetStepBudget(std::nullopt);
  t.join();
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_THAT(r.status.error_message(), HasSubstr("injected"));
  StreamResult next = Run(MakeRequest("g", {1, 2}, 4));
  EXPECT_TRUE(next.status.ok());
  EXPECT_THAT(next.tokens, ElementsAreArray(Expected(2, 4)));
  // The loop republishes its load after the step whose outputs ended the streams, so a client
  // can see its stream end a moment before the report shows the blocks free.
  EXPECT_TRUE(WaitForLoad([](const api::LoadReport& l) {
    return l.free_kv_blocks() == l.total_kv_blocks();
  })) << Load().DebugString();
}

TEST_F(WorkerServiceTest, SixtyFourConcurrentStreamsComplete) {
  Start({.num_blocks = 1024, .max_running = 64});
  constexpr int kStreams = 64;
  std::vector<StreamResult> results(kStreams);
  std::vector<std::thread> threads;
  for (int i = 0; i < kStreams; ++i) {
    threads.emplace_back([&, i] {
      results[i] = Run(MakeRequest(absl::StrCat("s", i), {i, i + 1, i + 2}, 8 + i % 5));
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kStreams; ++i) {
    ASSERT_TRUE(results[i].status.ok()) << i << ": " << results[i].status.error_message();
    EXPECT_THAT(results[i].tokens, ElementsAreArray(Expected(i + 2, 8 + i % 5))) << i;
  }
  // The loop republishes its load after the step whose outputs ended the streams, so a client
  // can see its stream end a moment before the report shows the blocks free.
  EXPECT_TRUE(WaitForLoad([](const api::LoadReport& l) {
    return l.free_kv_blocks() == l.total_kv_blocks();
  })) << Load().DebugString();
}

TEST_F(WorkerServiceTest, HealthFollowsServingAndShutdownDrains) {
  Start();
  auto health = grpc::health::v1::Health::NewStub(channel_);
  auto check = [&] {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status = health->Check(&context, {}, &response);
    return status.ok() ? response.status() : grpc::health::v1::HealthCheckResponse::UNKNOWN;
  };
  EXPECT_EQ(check(), grpc::health::v1::HealthCheckResponse::SERVING);

  // One stream in flight that can finish, one that cannot within the grace period.
  engine_->SetStepBudget(0);
  StreamResult finishes;
  StreamResult cut;
  std::thread a([&] { finishes = Run(MakeRequest("fin", {1, 2}, 2)); });
  ASSERT_TRUE(WaitForLoad([](const api::LoadReport& l) { return l.queued_requests() == 1; }));
  engine_->SetStepBudget(2);  // prefill + one decode: "fin" ends
  ASSERT_TRUE(WaitForLoad(
      [](const api::LoadReport& l) { return l.running_requests() + l.queued_requests() == 0; }));
  a.join();
  std::thread b([&] { cut = Run(MakeRequest("cut", {1, 2}, 50)); });
  ASSERT_TRUE(WaitForLoad([](const api::LoadReport& l) { return l.queued_requests() == 1; }));

  std::thread shutdown([&] { EXPECT_EQ(server_->Shutdown(absl::Milliseconds(300)), 1); });
  b.join();
  shutdown.join();
  EXPECT_TRUE(finishes.status.ok());
  EXPECT_THAT(finishes.tokens, ElementsAreArray(Expected(2, 2)));
  EXPECT_EQ(cut.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(cut.status.error_message(), HasSubstr("shutting down"));
}

TEST_F(WorkerServiceTest, DrainLetsInFlightStreamsFinishAndRefusesNewOnes) {
  Start();
  engine_->SetStepBudget(0);
  StreamResult inflight;
  std::thread a([&] { inflight = Run(MakeRequest("in", {1, 2}, 5)); });
  ASSERT_TRUE(WaitForLoad([](const api::LoadReport& l) { return l.queued_requests() == 1; }));
  loop_->StopAccepting();
  std::atomic<int32_t> cut{-1};
  std::thread drain([&] { cut = loop_->Drain(absl::Now() + absl::Seconds(20)); });
  // Draining: new work is refused while the old stream still runs.
  StreamResult refused = Run(MakeRequest("late", {1}, 2));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(loop_->NumLive(), 1);
  engine_->SetStepBudget(std::nullopt);
  a.join();
  drain.join();
  EXPECT_EQ(cut.load(), 0);
  EXPECT_TRUE(inflight.status.ok());
  EXPECT_THAT(inflight.tokens, ElementsAreArray(Expected(2, 5)));
}

// Issue 15, finding 3: ids that a client could have chosen never key a worker request, so
// Abort cannot reach another client's request through a guessed or reused id.
TEST_F(WorkerServiceTest, SubmitAndAbortRefuseIdsNoRouterMade) {
  Start();
  api::SubmitRequest client_chosen = MakeRequest("victim", {1, 2, 3}, 3);
  client_chosen.set_request_id("victim");
  StreamResult refused = Run(client_chosen);
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(refused.tokens.empty());

  engine_->SetStepBudget(1);
  StreamResult live;
  std::thread t([&] { live = Run(MakeRequest("live", {4, 5, 6}, 4)); });
  ASSERT_TRUE(WaitForLoad([](const api::LoadReport& l) { return l.running_requests() == 1; }));
  for (const std::string& id : {std::string("live"), RouterId("live") + "x", std::string("rq-1")}) {
    grpc::ClientContext context;
    api::AbortRequest request;
    request.set_request_id(id);
    api::AbortResponse response;
    EXPECT_EQ(stub_->Abort(&context, request, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT)
        << id;
    EXPECT_FALSE(response.aborted()) << id;
  }
  engine_->SetStepBudget(std::nullopt);
  t.join();
  EXPECT_TRUE(live.status.ok()) << live.status.error_message();
  EXPECT_EQ(live.stop, api::STOP_REASON_MAX_TOKENS);
  EXPECT_THAT(live.tokens, ElementsAreArray(Expected(6, 4)));
}

}  // namespace
}  // namespace expertmesh::server
