// Issue 19: structured output through the real router front ends against a fake worker, which
// records the grammar it was sent (it does not enforce it: the engine's own tests do). Over
// HTTP and gRPC a constraint reaches the worker as GBNF, a bad one is a 400 / INVALID_ARGUMENT
// with the reason before any worker sees it, and gRPC chats carry tools and return tool calls.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/grammar/gbnf.h"
#include "model/grammar/json_schema.h"
#include "tests/router/router_fixture.h"

namespace expertmesh::router::testing {
namespace {

namespace pb = ::expertmesh::v1;
using ::testing::HasSubstr;

class StructuredApiTest : public RouterFixture {
 protected:
  // Runs `req` to its end; the messages and the final status.
  grpc::Status Generate(const pb::GenerateRequest& req, std::vector<pb::GenerateResponse>* out) {
    grpc::ClientContext ctx;
    auto reader = Grpc()->Generate(&ctx, req);
    pb::GenerateResponse msg;
    while (reader->Read(&msg)) out->push_back(msg);
    return reader->Finish();
  }
};

constexpr char kSchema[] =
    R"({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})";

TEST_F(StructuredApiTest, HttpConstraintsReachTheWorkerAsGrammars) {
  StartWorkers(1);
  StartRouter();
  const nlohmann::json schema = nlohmann::json::parse(kSchema);
  const std::string expected = grammar::PrintGbnf(*grammar::JsonSchemaToGrammar(schema.dump()));
  for (const char* path : {"/v1/chat/completions", "/v1/completions"}) {
    nlohmann::json body = {{"model", "tiny"}, {"max_tokens", 3}};
    if (std::string(path) == "/v1/completions") {
      body["prompt"] = "x";
    } else {
      body["messages"] = {{{"role", "user"}, {"content", "x"}}};
    }
    body["response_format"] = {{"type", "json_schema"},
                               {"json_schema", {{"name", "n"}, {"schema", schema}}}};
    httplib::Result r = Post(path, body);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
    // The fixture's template never thinks: the grammar is the schema's own.
    EXPECT_EQ(workers_[0]->last_request().grammar(), expected) << path;

    body.erase("response_format");
    body["guided_choice"] = {"yes", "no"};
    r = Post(path, body);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
    EXPECT_THAT(workers_[0]->last_request().grammar(), HasSubstr("\"yes\""));

    body.erase("guided_choice");
    r = Post(path, body);
    ASSERT_TRUE(r);
    EXPECT_EQ(workers_[0]->last_request().grammar(), "") << "an unconstrained request";
  }

  // Refused with the reason, and no worker saw them.
  const int submitted = workers_[0]->submitted();
  struct Bad {
    nlohmann::json fields;
    const char* param;
    const char* says;
  };
  const nlohmann::json empty_array = {{"type", "array"}, {"minItems", 1}, {"maxItems", 0}};
  const Bad bad[] = {
      {nlohmann::json{
           {"response_format",
            {{"type", "json_schema"}, {"json_schema", {{"name", "x"}, {"schema", empty_array}}}}}},
       "response_format", "minItems"},
      {nlohmann::json{{"guided_regex", "([a-z]"}}, "guided_regex", "guided_regex"},
      {nlohmann::json{{"guided_grammar", "root ::= missing"}}, "guided_grammar", "missing"},
      {nlohmann::json{{"response_format", {{"type", "json_object"}}}, {"guided_choice", {"a"}}},
       "guided_choice", "'response_format' and 'guided_choice' cannot be combined"},
  };
  for (const Bad& b : bad) {
    nlohmann::json body = {
        {"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", "x"}}}}, {"max_tokens", 3}};
    body.update(b.fields);
    httplib::Result r = Post("/v1/chat/completions", body);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << r->body;
    const nlohmann::json error = nlohmann::json::parse(r->body)["error"];
    EXPECT_EQ(error["type"], "invalid_request_error");
    EXPECT_EQ(error["param"], b.param) << r->body;
    EXPECT_THAT(error["message"].get<std::string>(), HasSubstr(b.says));
  }
  EXPECT_EQ(workers_[0]->submitted(), submitted);
}

TEST_F(StructuredApiTest, GrpcConstraintsAndErrors) {
  StartWorkers(1);
  StartRouter();
  pb::GenerateRequest req;
  req.set_text("x");
  req.mutable_stop()->set_max_tokens(2);
  req.set_json_schema(kSchema);
  std::vector<pb::GenerateResponse> msgs;
  ASSERT_TRUE(Generate(req, &msgs).ok());
  EXPECT_EQ(
      workers_[0]->last_request().grammar(),
      grammar::PrintGbnf(*grammar::JsonSchemaToGrammar(nlohmann::json::parse(kSchema).dump())));
  req.mutable_choice()->add_choices("left");
  req.mutable_choice()->add_choices("right");
  ASSERT_TRUE(Generate(req, &msgs).ok());
  EXPECT_THAT(workers_[0]->last_request().grammar(), HasSubstr("\"right\""));

  const int submitted = workers_[0]->submitted();
  pb::GenerateRequest bad;
  bad.set_text("x");
  bad.set_json_schema(R"({"type": "strng"})");
  grpc::Status s = Generate(bad, &msgs);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("strng"));
  bad.set_json_schema("{not json");
  EXPECT_EQ(Generate(bad, &msgs).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  bad.set_regex("(");
  EXPECT_EQ(Generate(bad, &msgs).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  bad.mutable_choice();  // no choices
  EXPECT_EQ(Generate(bad, &msgs).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // tool_choice naming a function the chat lacks; required where the template has no format.
  pb::GenerateRequest chat;
  pb::ChatMessage* m = chat.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("x");
  chat.mutable_chat()->add_tools()->set_name("f");
  chat.mutable_chat()->set_tool_choice_function("nope");
  s = Generate(chat, &msgs);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("'nope'"));
  chat.mutable_chat()->clear_tool_choice_function();
  chat.mutable_chat()->set_tool_choice("required");
  s = Generate(chat, &msgs);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("tool-call format"));
  chat.mutable_chat()->set_tool_choice("auto");
  chat.mutable_chat()->mutable_tools(0)->set_parameters("{oops");
  s = Generate(chat, &msgs);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("tools.parameters"));
  EXPECT_EQ(workers_[0]->submitted(), submitted);
}

}  // namespace
}  // namespace expertmesh::router::testing
