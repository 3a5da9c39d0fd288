// Issue 19 item 0: chat requests reach the template as transformers would hand it the client's
// messages (tools, tool_calls, tool_call_id, content parts), byte for byte against
// tests/model/chat/data/reference.json; and a template the server cannot parse disables chat
// for that model with the parse error while completions keep working.
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router/model_context.h"
#include "router/openai_request.h"
#include "tests/router/router_fixture.h"

namespace expertmesh::router::testing {
namespace {

using Json = nlohmann::ordered_json;
using ::testing::HasSubstr;

const std::string kChatData = std::string(EXPERTMESH_SOURCE_DIR) + "/tests/model/chat/data/";

// The file's text (an absent file fails the test loudly, naming it).
std::string ReadFile(const std::string& path) { return ReadFileToString(path).value(); }

const Json& ReferenceCase(const std::string& name) {
  static const Json* reference = new Json(Json::parse(ReadFile(kChatData + "reference.json")));
  for (const Json& c : (*reference)["cases"]) {
    if (c["name"] == name) return c;
  }
  ADD_FAILURE() << "no reference case " << name;
  static const Json* none = new Json(Json::object());
  return *none;
}

// The reference case's messages and tools as an OpenAI client sends them: tool-call arguments
// as JSON strings.
Json OpenAiBody(const Json& reference_case) {
  Json messages = reference_case["messages"];
  for (Json& m : messages) {
    if (!m.contains("tool_calls")) continue;
    for (Json& call : m["tool_calls"]) {
      Json& args = call["function"]["arguments"];
      if (!args.is_string()) args = args.dump();
    }
  }
  Json body = {{"model", "tiny"}, {"messages", messages}};
  if (!reference_case["tools"].is_null()) body["tools"] = reference_case["tools"];
  return body;
}

absl::StatusOr<Prompt> BuildChat(const ModelContext& model, const Json& body) {
  absl::StatusOr<OpenAiRequest> request = ParseOpenAiRequest(body.dump(), /*chat=*/true);
  if (!request.ok()) return request.status();
  return model.BuildPrompt(request->input, 64);
}

class ChatToolsTest : public RouterFixture {
 protected:
  // A copy of the fixture's model whose tokenizer_config.json has `chat_template` instead (the
  // other files are links to the fixture model's).
  static std::string ModelWithTemplate(const std::string& name, const std::string& chat_template) {
    namespace fs = std::filesystem;
    const fs::path src = ModelDir();
    const fs::path dir = fs::path(EXPERTMESH_BINARY_DIR) / "test-scratch/router" / name;
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const auto& entry : fs::directory_iterator(src)) {
      if (entry.path().filename() == "tokenizer_config.json") continue;
      fs::create_symlink(fs::absolute(entry.path()), dir / entry.path().filename());
    }
    Json config = Json::parse(ReadFile(src / "tokenizer_config.json"));
    config["chat_template"] = chat_template;
    std::ofstream(dir / "tokenizer_config.json") << config.dump(1);
    return dir.string();
  }
};

TEST_F(ChatToolsTest, RequestKeepsWhatTemplatesRead) {
  absl::StatusOr<OpenAiRequest> r = ParseOpenAiRequest(R"({
    "messages": [
      {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
      {"role": "assistant", "content": null, "reasoning_content": "think",
       "tool_calls": [{"id": "c1", "type": "function",
                       "function": {"name": "f", "arguments": "{\"x\": 1, \"y\": [2]}"}},
                      {"id": "c2", "type": "function",
                       "function": {"name": "g", "arguments": "not json"}}]},
      {"role": "tool", "tool_call_id": "c1", "name": "f", "content": "ok"},
      {"role": "user", "content": null}
    ],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]})",
                                                       /*chat=*/true);
  ASSERT_TRUE(r.ok()) << r.status();
  const Json& m = r->input.messages;
  EXPECT_EQ(m[0]["content"], Json::parse(R"([{"type": "text", "text": "a"},
                                             {"type": "text", "text": "b"}])"));
  EXPECT_TRUE(m[1]["content"].is_null());
  EXPECT_EQ(m[1]["reasoning_content"], "think");
  // A JSON-object string becomes the object (key order kept); anything else stays a string.
  EXPECT_EQ(m[1]["tool_calls"][0]["function"]["arguments"].dump(), R"({"x":1,"y":[2]})");
  EXPECT_EQ(m[1]["tool_calls"][0]["id"], "c1");
  EXPECT_EQ(m[1]["tool_calls"][1]["function"]["arguments"], "not json");
  EXPECT_EQ(m[2]["tool_call_id"], "c1");
  EXPECT_EQ(m[2]["name"], "f");
  EXPECT_EQ(m[3]["content"], "");  // no tool calls: empty text, never None
  ASSERT_TRUE(r->input.tools.has_value());
  EXPECT_EQ((*r->input.tools)[0]["function"]["name"], "f");

  for (const char* bad : {
           R"({"messages": [{"role": "assistant", "tool_calls": {"id": "x"}}]})",
           R"({"messages": [{"role": "assistant", "tool_calls": [{"function": {}}]}]})",
           R"({"messages": [{"role": "user", "content": "x"}], "tools": {"type": "function"}})",
           R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
       }) {
    absl::StatusOr<OpenAiRequest> refused = ParseOpenAiRequest(bad, /*chat=*/true);
    EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << bad;
  }
}

// Through the whole request path, the published templates render what transformers renders for
// the same conversation (the reference cases hold transformers 5.23's output).
TEST_F(ChatToolsTest, ToolConversationsRenderAsTransformers) {
  struct Case {
    const char* template_file;
    const char* reference;
  };
  for (const Case& c : {
           Case{"qwen3_coder.jinja", "qwen3_coder/tool_roundtrip_dict_args/gen"},
           Case{"qwen3_coder.jinja", "qwen3_coder/tools_declared/gen"},
           Case{"qwen3_5.jinja", "qwen3_5/tool_roundtrip_dict_args/gen"},
           Case{"qwen3_5.jinja", "qwen3_5/content_parts/gen"},
           Case{"glm4_6.jinja", "glm4_6/tool_roundtrip_dict_args/gen"},
           Case{"minimax_m2.jinja", "minimax_m2/tool_result_named/gen"},
           Case{"gpt_oss.jinja", "gpt_oss/tool_roundtrip_dict_args/gen"},
           Case{"kimi_k2.jinja", "kimi_k2/tools_declared/gen"},
       }) {
    SCOPED_TRACE(c.reference);
    const Json& expected = ReferenceCase(c.reference);
    ASSERT_TRUE(expected.contains("expected"));
    absl::StatusOr<std::unique_ptr<ModelContext>> model = ModelContext::Load(
        ModelWithTemplate("chat-tools", ReadFile(kChatData + "templates/" + c.template_file)),
        "tiny");
    ASSERT_TRUE(model.ok()) << model.status();
    ASSERT_TRUE((*model)->chat_template_error().empty()) << (*model)->chat_template_error();
    absl::StatusOr<Prompt> prompt = BuildChat(**model, OpenAiBody(expected));
    ASSERT_TRUE(prompt.ok()) << prompt.status();
    std::string want = expected["expected"];
    // gpt-oss prints strftime_now("%Y-%m-%d"): the reference's fixed date, today's here.
    const std::string fixed_date = "Current date: 2025-03-07";
    if (const size_t at = want.find(fixed_date); at != std::string::npos) {
      char today[16];
      const std::time_t t = std::time(nullptr);
      std::tm tm{};
      localtime_r(&t, &tm);
      std::strftime(today, sizeof(today), "%Y-%m-%d", &tm);
      want.replace(at, fixed_date.size(), std::string("Current date: ") + today);
    }
    EXPECT_EQ(prompt->rendered, want);
  }
}

// A template that prints content as a string gets text parts joined; before, parts were
// joined for every template, and a template that reads parts never saw them.
TEST_F(ChatToolsTest, ContentPartsJoinForStringTemplates) {
  absl::StatusOr<std::unique_ptr<ModelContext>> model = ModelContext::Load(ModelDir(), "tiny");
  ASSERT_TRUE(model.ok()) << model.status();
  absl::StatusOr<Prompt> prompt = BuildChat(**model, Json::parse(R"({"messages": [
      {"role": "user", "content": [{"type": "text", "text": "one "},
                                   {"type": "text", "text": "two"}]}]})"));
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  EXPECT_THAT(prompt->rendered, HasSubstr("<|im_start|>user\none two<|im_end|>"));
}

constexpr char kBrokenTemplate[] = "{% for m in messages %}{% include 'turn.jinja' %}{% endfor %}";

// Before: a template that did not parse stopped the model from loading at all.
TEST_F(ChatToolsTest, UnparsableTemplateDisablesOnlyChat) {
  absl::StatusOr<std::unique_ptr<ModelContext>> model =
      ModelContext::Load(ModelWithTemplate("chat-broken", kBrokenTemplate), "tiny");
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_FALSE((*model)->description().has_chat_template);
  EXPECT_THAT((*model)->chat_template_error(), HasSubstr("'include'"));
  absl::StatusOr<Prompt> chat =
      BuildChat(**model, Json::parse(R"({"messages": [{"role": "user", "content": "hi"}]})"));
  ASSERT_TRUE(absl::IsInvalidArgument(chat.status())) << chat.status();
  EXPECT_THAT(chat.status().message(), HasSubstr("chat template"));
  EXPECT_THAT(chat.status().message(), HasSubstr("'include'"));
  PromptInput text;
  text.kind = PromptInput::Kind::kText;
  text.text = "hello";
  EXPECT_TRUE((*model)->BuildPrompt(text, 64).ok());
}

TEST_F(ChatToolsTest, UnparsableTemplateAnswersChatWith400AndServesCompletions) {
  const std::string dir = ModelWithTemplate("chat-broken-http", kBrokenTemplate);
  StartWorkers(1);
  StartRouter([&](RouterServerOptions& o) { o.model_dir = dir; });
  httplib::Result chat =
      Post("/v1/chat/completions", {{"model", "tiny"},
                                    {"messages", {{{"role", "user"}, {"content", "hi"}}}},
                                    {"max_completion_tokens", 2}});
  ASSERT_TRUE(chat);
  EXPECT_EQ(chat->status, 400) << chat->body;
  const nlohmann::json error = nlohmann::json::parse(chat->body)["error"];
  EXPECT_THAT(error["message"].get<std::string>(), HasSubstr("'include'"));
  EXPECT_EQ(error["param"], "messages");
  httplib::Result completion =
      Post("/v1/completions", {{"model", "tiny"}, {"prompt", "hello"}, {"max_tokens", 2}});
  ASSERT_TRUE(completion);
  EXPECT_EQ(completion->status, 200) << completion->body;
}

// Issue 19 item 3: a model whose template thinks gets reasoning_content apart from content, in
// whole responses and in stream deltas alike. The fake worker echoes the prompt's tokens, so the
// output begins with the user's text: "plan</think>answer..." after a generation prompt that
// opens <think> (DeepSeek-R1's), "<think>plan</think>answer..." after one that does not (Qwen3's).
TEST_F(ChatToolsTest, ReasoningContentApartFromContent) {
  struct Case {
    const char* name;
    const char* chat_template;
    const char* user;
  };
  for (const Case& c : {
           Case{"opened-in-prompt",
                "{{ messages[0]['content'] }}{% if add_generation_prompt %}<think>\n{% endif %}",
                "plan</think>\n\nanswer"},
           Case{"opened-by-model", "{{ messages[0]['content'] }}{# <think> #}",
                "<think>plan</think>\n\nanswer"},
       }) {
    SCOPED_TRACE(c.name);
    StartWorkers(1);
    const std::string dir = ModelWithTemplate(std::string("chat-think-") + c.name, c.chat_template);
    StartRouter([&](RouterServerOptions& o) { o.model_dir = dir; });
    const nlohmann::json body = {{"model", "tiny"},
                                 {"messages", {{{"role", "user"}, {"content", c.user}}}},
                                 {"max_completion_tokens", 40}};
    httplib::Result whole = Post("/v1/chat/completions", body);
    ASSERT_TRUE(whole);
    ASSERT_EQ(whole->status, 200) << whole->body;
    const nlohmann::json message = nlohmann::json::parse(whole->body)["choices"][0]["message"];
    EXPECT_EQ(message["reasoning_content"], "plan") << message;
    const std::string content = message["content"];
    EXPECT_TRUE(content.starts_with("answer")) << message;

    nlohmann::json streamed_body = body;
    streamed_body["stream"] = true;
    httplib::Result streamed = Post("/v1/chat/completions", streamed_body);
    ASSERT_TRUE(streamed);
    ASSERT_EQ(streamed->status, 200) << streamed->body;
    bool done = false;
    std::string reasoning, streamed_content;
    for (const nlohmann::json& e : ParseSse(streamed->body, &done)) {
      const nlohmann::json& delta = e["choices"][0]["delta"];
      if (delta.contains("reasoning_content")) reasoning += delta["reasoning_content"];
      if (delta.contains("content")) streamed_content += delta["content"];
    }
    EXPECT_TRUE(done);
    EXPECT_EQ(reasoning, "plan");
    EXPECT_EQ(streamed_content, content);

    // The gRPC Generate stream: reasoning and text apart in the same way.
    ::expertmesh::v1::GenerateRequest request;
    auto* m = request.mutable_chat()->add_messages();
    m->set_role("user");
    m->set_content(c.user);
    request.mutable_chat()->set_add_generation_prompt(true);
    request.mutable_stop()->set_max_tokens(40);
    grpc::ClientContext context;
    auto reader = Grpc()->Generate(&context, request);
    ::expertmesh::v1::GenerateResponse msg;
    std::string grpc_reasoning, grpc_text;
    while (reader->Read(&msg)) {
      grpc_reasoning += msg.reasoning();
      grpc_text += msg.text();
    }
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_EQ(grpc_reasoning, "plan");
    EXPECT_EQ(grpc_text, content);
    TearDown();
  }
  // A template that never thinks: no reasoning_content, tags and all in content.
  StartWorkers(1);
  StartRouter();
  httplib::Result plain =
      Post("/v1/chat/completions",
           {{"model", "tiny"},
            {"messages", {{{"role", "user"}, {"content", "<think>plan</think>answer"}}}},
            {"max_completion_tokens", 4}});
  ASSERT_TRUE(plain);
  ASSERT_EQ(plain->status, 200) << plain->body;
  EXPECT_FALSE(
      nlohmann::json::parse(plain->body)["choices"][0]["message"].contains("reasoning_content"));
}

// Issue 19 item 2 (Hermes format, tool_choice auto/none): a model whose template writes
// <tool_call> gets its calls back as tool_calls, finish_reason "tool_calls", whole and streamed.
// The fake worker echoes the prompt, here the user's text: the output is that text up to "END".
TEST_F(ChatToolsTest, ToolCallsReadBackFromTheOutput) {
  StartWorkers(1);
  const std::string dir =
      ModelWithTemplate("chat-tool-calls", "{{ messages[0]['content'] }}{# <tool_call> #}");
  StartRouter([&](RouterServerOptions& o) { o.model_dir = dir; });
  const std::string said =
      "Checking.<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
      "\"Paris\"}}\n</tool_call>END";
  nlohmann::json body = {{"model", "tiny"},
                         {"messages", {{{"role", "user"}, {"content", said}}}},
                         {"tools", nlohmann::json::parse(R"([{"type": "function", "function": {
           "name": "get_weather", "parameters": {"type": "object"}}}])")},
                         {"stop", {"END"}},
                         {"max_completion_tokens", 200}};
  httplib::Result whole = Post("/v1/chat/completions", body);
  ASSERT_TRUE(whole);
  ASSERT_EQ(whole->status, 200) << whole->body;
  const nlohmann::json choice = nlohmann::json::parse(whole->body)["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls") << choice;
  EXPECT_EQ(choice["message"]["content"], "Checking.");
  ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u) << choice;
  const nlohmann::json& call = choice["message"]["tool_calls"][0];
  EXPECT_EQ(call["type"], "function");
  EXPECT_TRUE(call["id"].get<std::string>().starts_with("call_"));
  EXPECT_EQ(call["function"]["name"], "get_weather");
  EXPECT_EQ(nlohmann::json::parse(call["function"]["arguments"].get<std::string>()),
            nlohmann::json::parse(R"({"city": "Paris"})"));

  body["stream"] = true;
  httplib::Result streamed = Post("/v1/chat/completions", body);
  ASSERT_TRUE(streamed);
  ASSERT_EQ(streamed->status, 200) << streamed->body;
  bool done = false;
  std::string content, finish;
  nlohmann::json calls = nlohmann::json::array();
  for (const nlohmann::json& e : ParseSse(streamed->body, &done)) {
    const nlohmann::json& c = e["choices"][0];
    if (c["delta"].contains("content")) content += c["delta"]["content"];
    if (c["delta"].contains("tool_calls")) {
      for (const nlohmann::json& t : c["delta"]["tool_calls"]) calls.push_back(t);
    }
    if (!c["finish_reason"].is_null()) finish = c["finish_reason"];
  }
  EXPECT_TRUE(done);
  EXPECT_EQ(content, "Checking.");
  EXPECT_EQ(finish, "tool_calls");
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0]["index"], 0);
  EXPECT_EQ(calls[0]["function"]["name"], "get_weather");
  EXPECT_EQ(calls[0]["function"]["arguments"], call["function"]["arguments"]);

  // tool_choice "none": the output is left as it is.
  body["stream"] = false;
  body["tool_choice"] = "none";
  httplib::Result none = Post("/v1/chat/completions", body);
  ASSERT_TRUE(none);
  ASSERT_EQ(none->status, 200) << none->body;
  const nlohmann::json plain = nlohmann::json::parse(none->body)["choices"][0];
  EXPECT_EQ(plain["finish_reason"], "stop");
  EXPECT_FALSE(plain["message"].contains("tool_calls"));
  EXPECT_THAT(plain["message"]["content"].get<std::string>(), HasSubstr("<tool_call>"));

  // A function the request lacks: 400 with why, and nothing reaches a worker.
  const int submitted = workers_[0]->submitted();
  body["tool_choice"] =
      nlohmann::json::parse(R"({"type": "function", "function": {"name": "nope"}})");
  httplib::Result unknown = Post("/v1/chat/completions", body);
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 400) << unknown->body;
  EXPECT_EQ(nlohmann::json::parse(unknown->body)["error"]["param"], "tool_choice");
  EXPECT_EQ(workers_[0]->submitted(), submitted);

  // "required" and a named function reach the worker as a grammar in the template's format.
  for (const nlohmann::json& constrained :
       {nlohmann::json("required"),
        nlohmann::json::parse(R"({"type": "function", "function": {"name": "get_weather"}})")}) {
    body["tool_choice"] = constrained;
    httplib::Result r = Post("/v1/chat/completions", body);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
    EXPECT_THAT(workers_[0]->last_request().grammar(), HasSubstr("get_weather"));
    EXPECT_THAT(workers_[0]->last_request().grammar(), HasSubstr("<tool_call>"));
  }
}

// Tool-call arguments reach templates as objects; DeepSeek-V3's concatenates them as the JSON
// text clients send, so it gets the text (before: a 400 from the template).
TEST_F(ChatToolsTest, TemplatesThatConcatenateArgumentsGetText) {
  const std::string dir = ModelWithTemplate("chat-deepseek-arguments",
                                            ReadFile(kChatData + "templates/deepseek_v3.jinja"));
  absl::StatusOr<std::unique_ptr<ModelContext>> model = ModelContext::Load(dir, "tiny");
  ASSERT_TRUE(model.ok()) << model.status();
  const Json body = {{"messages", Json::parse(R"([
      {"role": "user", "content": "Weather?"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function",
       "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
      {"role": "tool", "tool_call_id": "c", "content": "sunny"}])")}};
  absl::StatusOr<Prompt> prompt = BuildChat(**model, body);
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  EXPECT_THAT(prompt->rendered, HasSubstr("get_weather\n```json\n{\"city\":\"Paris\"}\n```"));
}

// The same over gRPC: tools in the chat, calls back as GenerateResponse.tool_calls with
// FINISH_REASON_TOOL_CALLS, and assistant turns that replay calls (arguments as JSON text).
TEST_F(ChatToolsTest, GrpcChatsCarryToolsAndReturnCalls) {
  StartWorkers(1);
  const std::string dir =
      ModelWithTemplate("chat-tool-calls-grpc", "{{ messages[0]['content'] }}{# <tool_call> #}");
  StartRouter([&](RouterServerOptions& o) { o.model_dir = dir; });
  namespace pb = ::expertmesh::v1;
  pb::GenerateRequest req;
  pb::ChatMessage* m = req.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content(
      "Checking.<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
      "\"Paris\"}}\n</tool_call>END");
  pb::ChatMessage* replay = req.mutable_chat()->add_messages();
  replay->set_role("assistant");
  pb::ToolCall* old = replay->add_tool_calls();
  old->set_id("c0");
  old->set_name("get_weather");
  old->set_arguments(R"({"city": "Rome"})");
  pb::ChatMessage* result = req.mutable_chat()->add_messages();
  result->set_role("tool");
  result->set_tool_call_id("c0");
  result->set_content("sunny");
  pb::Tool* tool = req.mutable_chat()->add_tools();
  tool->set_name("get_weather");
  tool->set_parameters(R"({"type": "object", "properties": {"city": {"type": "string"}}})");
  req.mutable_stop()->set_max_tokens(200);
  req.mutable_stop()->add_stop("END");
  grpc::ClientContext ctx;
  auto reader = Grpc()->Generate(&ctx, req);
  pb::GenerateResponse msg, last;
  std::string text;
  std::vector<pb::ToolCall> calls;
  while (reader->Read(&msg)) {
    text += msg.text();
    calls.insert(calls.end(), msg.tool_calls().begin(), msg.tool_calls().end());
    last = msg;
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(text, "Checking.");
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].name(), "get_weather");
  EXPECT_EQ(calls[0].index(), 0u);
  EXPECT_TRUE(calls[0].id().starts_with("call_"));
  EXPECT_EQ(nlohmann::json::parse(calls[0].arguments()),
            nlohmann::json::parse(R"({"city": "Paris"})"));
  EXPECT_EQ(last.finish_reason(), pb::FINISH_REASON_TOOL_CALLS);

  // tool_choice_function: the output is constrained to that call (the fake worker records the
  // grammar; it does not enforce it).
  req.mutable_chat()->set_tool_choice_function("get_weather");
  grpc::ClientContext named_ctx;
  auto named = Grpc()->Generate(&named_ctx, req);
  while (named->Read(&msg)) {
  }
  ASSERT_TRUE(named->Finish().ok());
  EXPECT_THAT(workers_[0]->last_request().grammar(), HasSubstr("get_weather"));
}

}  // namespace
}  // namespace expertmesh::router::testing
