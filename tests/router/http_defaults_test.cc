// Issue 14's items 4 and 6 against fake workers: chat roles limited to the known ones,
// /v1/completions' max_tokens default of 16 (chat keeps "up to the context"), echo, echo with
// logprobs and vLLM's prompt_logprobs.
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

// The completions logprobs of a response, its chunks' arrays joined when streamed.
json CompletionLogprobs(const httplib::Result& r, bool stream) {
  if (!stream) return json::parse(r->body)["choices"][0]["logprobs"];
  json out = {{"tokens", json::array()},
              {"token_logprobs", json::array()},
              {"top_logprobs", json::array()},
              {"text_offset", json::array()}};
  bool done = false;
  for (const json& e : ParseSse(r->body, &done)) {
    for (const json& c : e["choices"]) {
      if (c["index"] != 0 || c["logprobs"].is_null()) continue;
      for (const char* key : {"tokens", "token_logprobs", "top_logprobs", "text_offset"}) {
        for (const json& v : c["logprobs"][key]) out[key].push_back(v);
      }
    }
  }
  EXPECT_TRUE(done);
  return out;
}

TEST_F(HttpDefaultsTest, EchoWithLogprobsStartsWithThePromptTokensInBothModes) {
  StartWorkers(1);
  StartRouter();
  const std::string prompt = "alpha beta gamma delta";
  for (bool stream : {false, true}) {
    SCOPED_TRACE(stream ? "stream" : "whole");
    httplib::Result r = Post("/v1/completions", {{"prompt", prompt},
                                                 {"max_tokens", 3},
                                                 {"stream", stream},
                                                 {"echo", true},
                                                 {"logprobs", 2}});
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const iv1::SubmitRequest sent = workers_[0]->last_request();
    ASSERT_TRUE(sent.has_prompt_logprobs()) << "echo asks the worker for the prompt's logprobs";
    EXPECT_EQ(sent.prompt_logprobs(), 2u);
    const std::vector<int32_t> ids(sent.prompt_token_ids().begin(), sent.prompt_token_ids().end());
    const size_t n = ids.size();
    ASSERT_GE(n, 3u);
    const json lp = CompletionLogprobs(r, stream);
    ASSERT_EQ(lp["tokens"].size(), n + 3) << lp;
    ASSERT_EQ(lp["token_logprobs"].size(), n + 3);
    ASSERT_EQ(lp["top_logprobs"].size(), n + 3);
    ASSERT_EQ(lp["text_offset"].size(), n + 3);
    // The first prompt token has no logprob; the others the fake worker's, then the generated.
    EXPECT_TRUE(lp["token_logprobs"][0].is_null());
    EXPECT_TRUE(lp["top_logprobs"][0].is_null());
    size_t offset = 0;
    for (size_t i = 0; i < n + 3; ++i) {
      EXPECT_EQ(lp["tokens"][i], Decode({i < n ? ids[i] : ids[i - n]})) << i;
      EXPECT_EQ(lp["text_offset"][i], offset) << i;
      offset += lp["tokens"][i].get<std::string>().size();
      if (i == 0) continue;
      const float want = i < n ? -0.125f * i : -0.25f * ((i - n) % 4);
      EXPECT_FLOAT_EQ(lp["token_logprobs"][i].get<float>(), want) << i;
      EXPECT_EQ(lp["top_logprobs"][i].size(), 2u) << i;
    }
    EXPECT_FLOAT_EQ(lp["top_logprobs"][1][Decode({1})].get<float>(), -0.25f);
    EXPECT_FLOAT_EQ(lp["top_logprobs"][1][Decode({2})].get<float>(), -0.75f);
    EXPECT_EQ(ChoiceText(r, stream), prompt + Decode({ids[0], ids[1], ids[2]}));
    if (stream) {
      // The prompt and its logprobs are the choice's first chunk, on their own.
      bool done = false;
      const json first = ParseSse(r->body, &done).front()["choices"][0];
      EXPECT_EQ(first["text"], prompt);
      EXPECT_EQ(first["logprobs"]["tokens"].size(), n);
    } else {
      EXPECT_FALSE(json::parse(r->body)["choices"][0].contains("prompt_logprobs"));
    }
  }
}

TEST_F(HttpDefaultsTest, PromptLogprobsInVllmShapeOnCompletionsAndChat) {
  StartWorkers(1);
  StartRouter();
  // vLLM's list: null, then {"<id>": {logprob, rank, decoded_token}} with the prompt token
  // first and the k most likely after it.
  // Parsed keeping the order of keys, which is part of vLLM's shape.
  auto check = [&](const nlohmann::ordered_json& list) {
    const iv1::SubmitRequest sent = workers_[0]->last_request();
    EXPECT_EQ(sent.prompt_logprobs(), 3u);
    ASSERT_EQ(list.size(), static_cast<size_t>(sent.prompt_token_ids_size())) << list;
    EXPECT_TRUE(list[0].is_null());
    for (size_t i = 1; i < list.size(); ++i) {
      const int32_t id = sent.prompt_token_ids(static_cast<int>(i));
      const nlohmann::ordered_json& entry = list[i];
      ASSERT_TRUE(entry.is_object()) << i;
      EXPECT_EQ(entry.begin().key(), std::to_string(id)) << "the prompt token comes first";
      const nlohmann::ordered_json& own = entry[std::to_string(id)];
      EXPECT_FLOAT_EQ(own["logprob"].get<float>(), -0.125f * i);
      EXPECT_EQ(own["rank"], 1 + i % 3);
      // Special tokens (the chat template's) show as their text; Decode skips them.
      const std::string text = Decode({id});
      if (!text.empty()) {
        EXPECT_EQ(own["decoded_token"], text);
      }
      EXPECT_FALSE(own["decoded_token"].get<std::string>().empty());
      for (int j = 1; j <= 3; ++j) {
        if (j == id) continue;
        const nlohmann::ordered_json& alt = entry[std::to_string(j)];
        EXPECT_EQ(alt["rank"], j);
        EXPECT_FLOAT_EQ(alt["logprob"].get<float>(), -0.5f * (j - 1) - 0.25f);
      }
    }
  };
  httplib::Result r =
      Post("/v1/completions",
           {{"prompt", "one two three four"}, {"max_tokens", 2}, {"prompt_logprobs", 3}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  nlohmann::ordered_json choice = nlohmann::ordered_json::parse(r->body)["choices"][0];
  check(choice["prompt_logprobs"]);
  EXPECT_TRUE(choice["logprobs"].is_null());
  EXPECT_EQ(json::parse(r->body)["usage"]["prompt_tokens_details"]["cached_tokens"], 0);

  r = Post("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "hi there"}}}},
                                    {"max_tokens", 2},
                                    {"prompt_logprobs", 3}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  check(nlohmann::ordered_json::parse(r->body)["prompt_logprobs"]);  // vLLM: on the response

  // Without the parameter nothing is asked or returned.
  r = Post("/v1/completions", {{"prompt", "one two"}, {"max_tokens", 2}});
  ASSERT_TRUE(r);
  EXPECT_FALSE(workers_[0]->last_request().has_prompt_logprobs());
  EXPECT_FALSE(json::parse(r->body)["choices"][0].contains("prompt_logprobs"));

  // gRPC: the first message carries them, with the token strings.
  auto stub = Grpc();
  ::expertmesh::v1::GenerateRequest request;
  request.set_text("one two three four");
  request.set_prompt_logprobs(2);
  request.mutable_stop()->set_max_tokens(2);
  grpc::ClientContext context;
  ::expertmesh::v1::GenerateResponse response;
  auto reader = stub->Generate(&context, request);
  std::vector<int> sizes;
  while (reader->Read(&response)) sizes.push_back(response.prompt_logprobs_size());
  ASSERT_TRUE(reader->Finish().ok());
  const iv1::SubmitRequest sent = workers_[0]->last_request();
  ASSERT_FALSE(sizes.empty());
  EXPECT_EQ(sizes[0], sent.prompt_token_ids_size() - 1);
  for (size_t m = 1; m < sizes.size(); ++m) EXPECT_EQ(sizes[m], 0);
}

TEST_F(HttpDefaultsTest, BadPromptLogprobsAndEchoOnChatAreClear400s) {
  StartWorkers(1);
  StartRouter();
  struct Case {
    const char* path;
    json body;
    const char* param;
  };
  const json chat = {{{"role", "user"}, {"content", "hi"}}};
  const Case cases[] = {
      {"/v1/completions", {{"prompt", "hi"}, {"prompt_logprobs", 21}}, "prompt_logprobs"},
      {"/v1/completions", {{"prompt", "hi"}, {"prompt_logprobs", -1}}, "prompt_logprobs"},
      {"/v1/completions", {{"prompt", "hi"}, {"prompt_logprobs", "2"}}, "prompt_logprobs"},
      {"/v1/chat/completions", {{"messages", chat}, {"prompt_logprobs", 99}}, "prompt_logprobs"},
      {"/v1/completions",
       {{"prompt", "hi"}, {"prompt_logprobs", 1}, {"stream", true}},
       "prompt_logprobs"},
      // (Completions name their logprobs count top_logprobs in errors, as before.)
      {"/v1/completions", {{"prompt", "hi"}, {"echo", true}, {"logprobs", 21}}, "top_logprobs"},
      {"/v1/chat/completions", {{"messages", chat}, {"echo", true}}, "echo"},
      {"/v1/completions", {{"prompt", "hi"}, {"echo", "yes"}}, "echo"},
  };
  for (const Case& c : cases) {
    httplib::Result r = Post(c.path, c.body);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 400) << c.body << ": " << r->body;
    EXPECT_EQ(json::parse(r->body)["error"]["param"], c.param) << c.body << ": " << r->body;
  }
  EXPECT_EQ(workers_[0]->submitted(), 0);
}

}  // namespace
}  // namespace expertmesh::router::testing
