// Issue 14's items 4 and 6 against fake workers: chat roles limited to the known ones,
// /v1/completions' max_tokens default of 16 (chat keeps "up to the context"), and echo.
#include <string>
#include <vector>

#include "tests/router/router_fixture.h"

namespace expertmesh::router::testing {
namespace {

using nlohmann::json;

class HttpDefaultsTest : public RouterFixture {};

// The text of choice `index` of a response, joined over the chunks when streamed.
std::string ChoiceText(const httplib::Result& r, bool stream, int index = 0) {
  if (!stream) return json::parse(r->body)["choices"][index]["text"];
  bool done = false;
  std::string text;
  for (const json& e : ParseSse(r->body, &done)) {
    for (const json& c : e["choices"]) {
      if (c["index"] == index) text += c["text"].get<std::string>();
    }
  }
  EXPECT_TRUE(done);
  return text;
}

TEST_F(HttpDefaultsTest, UnknownChatRolesAreRefusedOverHttpAndGrpc) {
  StartWorkers(1);
  StartRouter();
  for (const std::string role : {"wizard", "User", "<|im_start|>system", ""}) {
    httplib::Result r = Post(
        "/v1/chat/completions",
        {{"messages",
          {{{"role", "system"}, {"content", "be brief"}}, {{"role", role}, {"content", "hi"}}}},
         {"max_tokens", 2}});
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 400) << role << ": " << r->body;
    const json error = json::parse(r->body)["error"];
    EXPECT_EQ(error["param"], "messages");
    EXPECT_NE(error["message"].get<std::string>().find("message 1 has role"), std::string::npos)
        << error;
  }
  EXPECT_EQ(workers_[0]->submitted(), 0);

  // gRPC builds its prompt through the same ModelContext.
  auto stub = Grpc();
  ::expertmesh::v1::GenerateRequest request;
  ::expertmesh::v1::ChatMessage* m = request.mutable_chat()->add_messages();
  m->set_role("wizard");
  m->set_content("hi");
  request.mutable_stop()->set_max_tokens(2);
  grpc::ClientContext context;
  ::expertmesh::v1::GenerateResponse response;
  auto reader = stub->Generate(&context, request);
  while (reader->Read(&response)) {
  }
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_EQ(workers_[0]->submitted(), 0);
}

TEST_F(HttpDefaultsTest, EveryStandardRoleIsAccepted) {
  StartWorkers(1);
  StartRouter();
  for (const char* role : {"system", "developer", "user", "assistant", "tool", "function"}) {
    json messages = {{{"role", role}, {"content", "some text"}}};
    if (std::string(role) != "user") messages.push_back({{"role", "user"}, {"content", "go"}});
    httplib::Result r = Post("/v1/chat/completions", {{"messages", messages}, {"max_tokens", 2}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << role << ": " << r->body;
  }
}

TEST_F(HttpDefaultsTest, CompletionsDefaultTo16TokensAndChatToTheContext) {
  StartWorkers(1);
  StartRouter();
  httplib::Result r = Post("/v1/completions", {{"prompt", "one two three"}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(workers_[0]->last_request().max_tokens(), 16u);
  EXPECT_EQ(json::parse(r->body)["usage"]["completion_tokens"], 16);

  // An explicit max_tokens still wins, above the default too.
  r = Post("/v1/completions", {{"prompt", "one two three"}, {"max_tokens", 40}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(workers_[0]->last_request().max_tokens(), 40u);

  // Chat without a limit: everything the context leaves.
  r = Post("/v1/chat/completions",
           {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"stream", true}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const iv1::SubmitRequest chat = workers_[0]->last_request();
  const int64_t context = router_->core().model().description().context_length;
  EXPECT_EQ(chat.max_tokens(), context - chat.prompt_token_ids_size());
}

TEST_F(HttpDefaultsTest, TheCompletionsDefaultShrinksToTheRoomLeft) {
  StartWorkers(1);
  StartRouter();
  // A prompt that leaves 5 tokens: the default is cut to them instead of failing a request
  // that never asked for 16.
  const int64_t context = router_->core().model().description().context_length;
  std::vector<int32_t> ids(static_cast<size_t>(context - 5), Encode("a")[0]);
  httplib::Result r = Post("/v1/completions", {{"prompt", ids}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(workers_[0]->last_request().max_tokens(), 5u);
  // Asked for explicitly, 16 does not fit and is refused naming max_tokens.
  r = Post("/v1/completions", {{"prompt", ids}, {"max_tokens", 16}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(json::parse(r->body)["error"]["param"], "max_tokens");
}

TEST_F(HttpDefaultsTest, EchoPrependsThePromptInBothModes) {
  StartWorkers(1);
  StartRouter();
  const std::string prompt = "alpha beta gamma delta";
  for (bool stream : {false, true}) {
    httplib::Result plain =
        Post("/v1/completions", {{"prompt", prompt}, {"max_tokens", 3}, {"stream", stream}});
    httplib::Result echoed =
        Post("/v1/completions",
             {{"prompt", prompt}, {"max_tokens", 3}, {"stream", stream}, {"echo", true}, {"n", 2}});
    ASSERT_TRUE(plain && echoed);
    ASSERT_EQ(plain->status, 200) << plain->body;
    ASSERT_EQ(echoed->status, 200) << echoed->body;
    const std::string completion = ChoiceText(plain, stream);
    ASSERT_FALSE(completion.empty());
    EXPECT_EQ(ChoiceText(echoed, stream, 0), prompt + completion) << stream;
    EXPECT_EQ(ChoiceText(echoed, stream, 1), prompt + completion) << stream;
    if (!stream) {
      // Usage counts generated tokens only (3 for each of the 2 choices), as OpenAI's does.
      EXPECT_EQ(json::parse(echoed->body)["usage"]["completion_tokens"], 6);
    }
  }
}

TEST_F(HttpDefaultsTest, EchoOfTokenIdsIsTheDecodedPrompt) {
  StartWorkers(1);
  StartRouter();
  const std::vector<int32_t> ids = Encode("token ids come back as text");
  httplib::Result r = Post("/v1/completions", {{"prompt", ids}, {"max_tokens", 2}, {"echo", true}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  // The fake worker generates the prompt's first tokens again.
  EXPECT_EQ(ChoiceText(r, false), Decode(ids) + Decode({ids[0], ids[1]}));
}

TEST_F(HttpDefaultsTest, EchoWithLogprobsOrOnChatIsAClear400) {
  StartWorkers(1);
  StartRouter();
  httplib::Result r = Post("/v1/completions",
                           {{"prompt", "hi"}, {"max_tokens", 2}, {"echo", true}, {"logprobs", 1}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 400) << r->body;
  json error = json::parse(r->body)["error"];
  EXPECT_EQ(error["param"], "echo");
  EXPECT_NE(error["message"].get<std::string>().find("prompt tokens' logprobs"), std::string::npos)
      << error;

  r = Post("/v1/chat/completions",
           {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"echo", true}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 400) << r->body;
  EXPECT_EQ(json::parse(r->body)["error"]["param"], "echo");

  r = Post("/v1/completions", {{"prompt", "hi"}, {"echo", "yes"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_EQ(workers_[0]->submitted(), 0);
}

}  // namespace
}  // namespace expertmesh::router::testing
