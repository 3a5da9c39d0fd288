// The public gRPC API (expertmesh.v1.Inference) against fake workers.
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/router/router_fixture.h"

namespace expertmesh::router::testing {
namespace {

namespace pb = ::expertmesh::v1;

class GrpcApiTest : public RouterFixture {};

TEST_F(GrpcApiTest, GenerateStreamsTextAndUsage) {
  StartWorkers(1);
  StartRouter();
  const std::string prompt = "gRPC streams tokens one by one.";
  const size_t n = Encode(prompt).size();
  pb::GenerateRequest req;
  req.set_text(prompt);
  req.mutable_stop()->set_max_tokens(static_cast<uint32_t>(n));
  req.set_logprobs(true);
  grpc::ClientContext ctx;
  auto reader = Grpc()->Generate(&ctx, req);
  pb::GenerateResponse msg;
  std::string text;
  size_t tokens = 0;
  pb::GenerateResponse last;
  while (reader->Read(&msg)) {
    text += msg.text();
    tokens += msg.tokens_size();
    last = msg;
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(text, prompt);
  EXPECT_EQ(tokens, n);
  EXPECT_EQ(last.finish_reason(), pb::FINISH_REASON_LENGTH);
  EXPECT_EQ(last.usage().prompt_tokens(), n);
  EXPECT_EQ(last.usage().completion_tokens(), n);
}

TEST_F(GrpcApiTest, StopStringAndInvalidArguments) {
  StartWorkers(1);
  StartRouter();
  pb::GenerateRequest req;
  req.set_text("alpha beta gamma delta");
  req.mutable_stop()->set_max_tokens(20);
  req.mutable_stop()->add_stop(" gamma");
  grpc::ClientContext ctx;
  auto reader = Grpc()->Generate(&ctx, req);
  pb::GenerateResponse msg, last;
  std::string text;
  while (reader->Read(&msg)) {
    text += msg.text();
    last = msg;
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(text, "alpha beta");
  EXPECT_EQ(last.finish_reason(), pb::FINISH_REASON_STOP_STRING);
  EXPECT_EQ(last.matched_stop(), " gamma");

  req.mutable_sampling()->set_top_p(0);
  grpc::ClientContext bad;
  auto bad_reader = Grpc()->Generate(&bad, req);
  while (bad_reader->Read(&msg)) {
  }
  grpc::Status status = bad_reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("top_p"), std::string::npos);

  req.Clear();
  req.set_model("nope");
  req.set_text("x");
  grpc::ClientContext unknown;
  auto unknown_reader = Grpc()->Generate(&unknown, req);
  while (unknown_reader->Read(&msg)) {
  }
  EXPECT_EQ(unknown_reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(GrpcApiTest, TokenizeModelsAndHealth) {
  StartWorkers(1);
  StartRouter();
  pb::TokenizeRequest treq;
  treq.set_text("Hello world");
  pb::TokenizeResponse tres;
  grpc::ClientContext c1;
  ASSERT_TRUE(Grpc()->Tokenize(&c1, treq, &tres).ok());
  EXPECT_EQ(std::vector<int32_t>(tres.token_ids().begin(), tres.token_ids().end()),
            Encode("Hello world"));
  EXPECT_EQ(tres.tokens_size(), tres.token_ids_size());

  pb::TokenizeRequest chat;
  auto* m = chat.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("hi");
  chat.mutable_chat()->set_add_generation_prompt(true);
  grpc::ClientContext c2;
  ASSERT_TRUE(Grpc()->Tokenize(&c2, chat, &tres).ok());
  EXPECT_NE(tres.rendered_prompt().find("<|im_start|>user\nhi"), std::string::npos);

  pb::ModelInfo info;
  grpc::ClientContext c3;
  ASSERT_TRUE(Grpc()->GetModelInfo(&c3, {}, &info).ok());
  EXPECT_EQ(info.name(), "tiny");
  EXPECT_EQ(info.architecture(), "Qwen3MoeForCausalLM");
  EXPECT_EQ(info.max_context_length(), 4096u);
  EXPECT_TRUE(info.has_chat_template());
  EXPECT_EQ(info.ready_worker_groups(), 1u);

  auto health = grpc::health::v1::Health::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(router_->grpc_port()), grpc::InsecureChannelCredentials()));
  grpc::ClientContext c4;
  grpc::health::v1::HealthCheckResponse hres;
  ASSERT_TRUE(health->Check(&c4, {}, &hres).ok());
  EXPECT_EQ(hres.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(GrpcApiTest, CancelAndDeadlineAbortOnTheWorker) {
  StartWorkers(1);
  workers_[0]->SetTokenDelay(absl::Milliseconds(5));
  StartRouter();
  pb::GenerateRequest req;
  req.set_text("cancel me please");
  req.mutable_stop()->set_max_tokens(3000);
  {
    grpc::ClientContext ctx;
    auto reader = Grpc()->Generate(&ctx, req);
    pb::GenerateResponse msg;
    ASSERT_TRUE(reader->Read(&msg));
    ctx.TryCancel();
    while (reader->Read(&msg)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  ASSERT_TRUE(workers_[0]->WaitFor(
      [](const FakeWorker& w) { return w.cancelled() == 1 && w.active() == 0; },
      absl::Seconds(20)));
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
    auto reader = Grpc()->Generate(&ctx, req);
    pb::GenerateResponse msg;
    while (reader->Read(&msg)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  ASSERT_TRUE(workers_[0]->WaitFor(
      [](const FakeWorker& w) { return w.cancelled() == 2 && w.active() == 0; },
      absl::Seconds(20)));
  EXPECT_EQ(workers_[0]->free_kv_blocks(), 1024u);
}

}  // namespace
}  // namespace expertmesh::router::testing
