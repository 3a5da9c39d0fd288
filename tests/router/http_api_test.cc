// The OpenAI-compatible HTTP API against fake workers: bodies, SSE streams, errors, auth, 429,
// and client disconnects reaching the worker.
#include <atomic>
#include <thread>

#include "absl/synchronization/notification.h"
#include "tests/router/router_fixture.h"

namespace expertmesh::router::testing {
namespace {

using nlohmann::json;

class HttpApiTest : public RouterFixture {};

TEST_F(HttpApiTest, CompletionEchoesThePromptWithUsage) {
  StartWorkers(1);
  StartRouter();
  const std::string prompt = "The quick brown fox jumps over the lazy dog.";
  const size_t n = Encode(prompt).size();
  httplib::Result r =
      Post("/v1/completions",
           {{"model", "tiny"}, {"prompt", prompt}, {"max_tokens", n}, {"temperature", 0}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json body = json::parse(r->body);
  EXPECT_EQ(body["object"], "text_completion");
  EXPECT_EQ(body["choices"][0]["text"], prompt);
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(body["usage"]["prompt_tokens"], n);
  EXPECT_EQ(body["usage"]["completion_tokens"], n);
  EXPECT_EQ(body["usage"]["total_tokens"], 2 * n);
  EXPECT_EQ(workers_[0]->last_request().sampling().temperature(), 0.0f);
}

TEST_F(HttpApiTest, ChatStreamEqualsChatJsonAndEndsWithUsage) {
  StartWorkers(1);
  StartRouter();
  json req = {{"model", "tiny"},
              {"messages", {{{"role", "user"}, {"content", "Hello there, how are you?"}}}},
              {"max_completion_tokens", 12},
              {"seed", 7}};
  httplib::Result plain = Post("/v1/chat/completions", req);
  ASSERT_TRUE(plain);
  ASSERT_EQ(plain->status, 200) << plain->body;
  json full = json::parse(plain->body);
  const std::string content = full["choices"][0]["message"]["content"];
  // The fake worker echoes the rendered prompt's first tokens.
  const internal_api::SubmitRequest submitted = workers_[0]->last_request();
  const std::vector<int32_t> sent(submitted.prompt_token_ids().begin(),
                                  submitted.prompt_token_ids().end());
  EXPECT_EQ(content, Decode({sent.begin(), sent.begin() + 12}));
  EXPECT_EQ(full["usage"]["completion_tokens"], 12);
  EXPECT_EQ(workers_[0]->last_request().sampling().seed(), 7u);

  req["stream"] = true;
  req["stream_options"] = {{"include_usage", true}};
  httplib::Result streamed = Post("/v1/chat/completions", req);
  ASSERT_TRUE(streamed);
  ASSERT_EQ(streamed->status, 200);
  EXPECT_EQ(streamed->get_header_value("Content-Type"), "text/event-stream");
  bool done = false;
  std::vector<json> events = ParseSse(streamed->body, &done);
  ASSERT_TRUE(done);
  ASSERT_GE(events.size(), 3u);
  std::string joined;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    EXPECT_EQ(events[i]["object"], "chat.completion.chunk");
    ASSERT_EQ(events[i]["choices"].size(), 1u);
    if (i == 0) {
      EXPECT_EQ(events[i]["choices"][0]["delta"]["role"], "assistant");
    }
    joined += events[i]["choices"][0]["delta"].value("content", "");
  }
  EXPECT_EQ(joined, content);
  EXPECT_EQ(events[events.size() - 2]["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(events.back()["choices"].empty());
  EXPECT_EQ(events.back()["usage"]["completion_tokens"], 12);
  EXPECT_EQ(events.back()["usage"]["prompt_tokens"], sent.size());
}

TEST_F(HttpApiTest, StopStringsCutTheTextInBothModes) {
  StartWorkers(1);
  StartRouter();
  const std::string prompt = "one two three four five";
  for (bool stream : {false, true}) {
    httplib::Result r = Post(
        "/v1/completions",
        {{"prompt", prompt}, {"max_tokens", 20}, {"stop", {" three", "zzz"}}, {"stream", stream}});
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    std::string text, finish;
    if (stream) {
      bool done = false;
      for (const json& e : ParseSse(r->body, &done)) {
        text += e["choices"][0]["text"].get<std::string>();
        if (!e["choices"][0]["finish_reason"].is_null()) {
          finish = e["choices"][0]["finish_reason"];
        }
      }
      EXPECT_TRUE(done);
    } else {
      json body = json::parse(r->body);
      text = body["choices"][0]["text"];
      finish = body["choices"][0]["finish_reason"];
      EXPECT_LT(body["usage"]["completion_tokens"].get<int>(), 20);
    }
    EXPECT_EQ(text, "one two") << stream;
    EXPECT_EQ(finish, "stop");
  }
}

TEST_F(HttpApiTest, NChoicesAndLogprobs) {
  StartWorkers(1);
  StartRouter();
  httplib::Result r =
      Post("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "abc def"}}}},
                                    {"n", 3},
                                    {"max_tokens", 4},
                                    {"logprobs", true},
                                    {"top_logprobs", 2}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json body = json::parse(r->body);
  ASSERT_EQ(body["choices"].size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(body["choices"][i]["index"], i);
    const json& lp = body["choices"][i]["logprobs"]["content"];
    ASSERT_EQ(lp.size(), 4u);
    EXPECT_EQ(lp[0]["top_logprobs"].size(), 2u);
    EXPECT_TRUE(lp[1]["logprob"].is_number());
  }
  EXPECT_EQ(body["usage"]["completion_tokens"], 12);
  EXPECT_EQ(workers_[0]->submitted(), 3);
}

TEST_F(HttpApiTest, BadRequestsGetOpenAiErrorsAndTheServerKeepsServing) {
  StartWorkers(1);
  StartRouter([](RouterServerOptions& o) { o.core.limits.max_request_bytes = 4096; });
  struct Case {
    std::string body;
    int status;
    std::string param;
  };
  const std::vector<Case> cases = {
      {"{not json", 400, ""},
      {R"({"model":"gpt-9","prompt":"hi"})", 404, "model"},
      {R"({"prompt":"hi","temperature":-1})", 400, "temperature"},
      {R"({"prompt":"hi","top_p":7})", 400, "top_p"},
      {R"({"prompt":"hi","n":100})", 400, "n"},
      {R"({"prompt":"hi","max_tokens":"ten"})", 400, "max_tokens"},
      {R"({"prompt":"hi","max_tokens":100000})", 400, "max_tokens"},
      {R"({"temperature":1})", 400, "prompt"},
      {R"({"prompt":"hi","logprobs":50})", 400, "top_logprobs"},
      {"{\"prompt\":\"" + std::string(5000, 'a') + "\"}", 413, ""},
  };
  for (const Case& c : cases) {
    httplib::Result r = Http()->Post("/v1/completions", c.body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, c.status) << c.body.substr(0, 60) << " -> " << r->body;
    json err = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(err.contains("error")) << r->body;
    EXPECT_FALSE(err["error"]["message"].get<std::string>().empty());
    EXPECT_TRUE(err["error"].contains("type"));
    EXPECT_TRUE(err["error"].contains("code"));
    if (!c.param.empty()) {
      EXPECT_EQ(err["error"]["param"], c.param) << r->body;
    }
  }
  httplib::Result r = Post("/v1/chat/completions", {{"messages", "hello"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  r = Post("/v1/completions", {{"prompt", "still fine"}, {"max_tokens", 2}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(workers_[0]->submitted(), 1);  // no bad request reached a worker

  httplib::Result models = Http()->Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(json::parse(models->body)["data"][0]["id"], "tiny");
  EXPECT_EQ(Http()->Get("/healthz")->status, 200);
  EXPECT_EQ(Http()->Get("/readyz")->status, 200);
  const std::string metrics = Http()->Get("/metrics")->body;
  EXPECT_NE(metrics.find("expertmesh_router_requests_total{api=\"http\",endpoint=\"/v1/"
                         "completions\",status=\"400\"} 8"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("expertmesh_router_time_to_first_token_seconds_count 1"),
            std::string::npos);
  EXPECT_NE(metrics.find("expertmesh_worker_group_kv_usage_ratio{group=\"" +
                         workers_[0]->address() + "\"}"),
            std::string::npos);
}

TEST_F(HttpApiTest, ApiKeysAreEnforced) {
  StartWorkers(1);
  StartRouter([](RouterServerOptions& o) { o.api_keys = ApiKeys({"sk-right"}); });
  json req = {{"prompt", "hi"}, {"max_tokens", 1}};
  httplib::Result r = Post("/v1/completions", req);
  EXPECT_EQ(r->status, 401);
  r = Post("/v1/completions", req, "sk-wrong");
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "invalid_api_key");
  EXPECT_EQ(Post("/v1/completions", req, "sk-right")->status, 200);
  EXPECT_EQ(Http()->Get("/healthz")->status, 200);  // probes need no key

  ::expertmesh::v1::ListModelsResponse models;
  grpc::ClientContext no_key;
  EXPECT_EQ(Grpc()->ListModels(&no_key, {}, &models).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  grpc::ClientContext with_key;
  with_key.AddMetadata("authorization", "Bearer sk-right");
  EXPECT_TRUE(Grpc()->ListModels(&with_key, {}, &models).ok());
}

// Streams a slow completion on a background thread until the test releases it.
class SlowStream {
 public:
  SlowStream(int port, int max_tokens) {
    thread_ = std::thread([this, port, max_tokens] {
      httplib::Client c("127.0.0.1", port);
      c.set_read_timeout(60, 0);
      httplib::Request req;
      req.method = "POST";
      req.path = "/v1/completions";
      req.body =
          json{{"prompt", "slow and steady"}, {"max_tokens", max_tokens}, {"stream", true}}.dump();
      req.set_header("Content-Type", "application/json");
      req.content_receiver = [this](const char* data, size_t n, uint64_t, uint64_t) {
        body_.append(data, n);
        if (!first_.HasBeenNotified()) first_.Notify();
        return !disconnect_.load();
      };
      httplib::Response res;
      httplib::Error error;
      ok_ = c.send(req, res, error);
      status_ = res.status;
      if (!first_.HasBeenNotified()) first_.Notify();
    });
  }
  ~SlowStream() { Join(); }
  void WaitFirstChunk() { first_.WaitForNotification(); }
  void Disconnect() { disconnect_.store(true); }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  const std::string& body() const { return body_; }
  int status() const { return status_; }

 private:
  std::thread thread_;
  absl::Notification first_;
  std::atomic<bool> disconnect_{false};
  std::string body_;
  bool ok_ = false;
  int status_ = 0;
};

TEST_F(HttpApiTest, FullQueueAnswers429WithRetryAfter) {
  StartWorkers(1);
  workers_[0]->SetTokenDelay(absl::Milliseconds(5));
  StartRouter([](RouterServerOptions& o) {
    o.core.max_active = 1;
    o.core.max_queued = 0;
  });
  SlowStream busy(router_->http_port(), 2000);
  busy.WaitFirstChunk();
  httplib::Result r = Post("/v1/completions", {{"prompt", "hi"}, {"max_tokens", 1}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 429) << r->body;
  EXPECT_EQ(r->get_header_value("Retry-After"), "1");
  EXPECT_EQ(json::parse(r->body)["error"]["type"], "rate_limit_error");
  busy.Disconnect();
  busy.Join();
  ASSERT_TRUE(
      workers_[0]->WaitFor([](const FakeWorker& w) { return w.active() == 0; }, absl::Seconds(20)));
}

TEST_F(HttpApiTest, ClientDisconnectAbortsOnTheWorkerAndFreesKv) {
  StartWorkers(1);
  workers_[0]->SetTokenDelay(absl::Milliseconds(5));
  StartRouter();
  SlowStream stream(router_->http_port(), 2000);
  stream.WaitFirstChunk();
  EXPECT_EQ(workers_[0]->active(), 1);
  EXPECT_LT(workers_[0]->free_kv_blocks(), 1024u);
  stream.Disconnect();
  stream.Join();
  ASSERT_TRUE(workers_[0]->WaitFor(
      [](const FakeWorker& w) { return w.cancelled() == 1 && w.active() == 0; },
      absl::Seconds(20)));
  EXPECT_EQ(workers_[0]->free_kv_blocks(), 1024u);
}

}  // namespace
}  // namespace expertmesh::router::testing
