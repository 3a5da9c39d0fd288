// The Worker service's grammar path with a real engine: SubmitRequest.grammar in, tokens out on
// a make-model checkpoint (its tokenizer gives the worker's vocabulary). A JSON-object grammar's
// streams parse and end with eos; a grammar that does not parse, one sent to a worker without a
// vocabulary for grammars, and a grammar with ignore_eos are refused with INVALID_ARGUMENT while
// the worker goes on serving.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "expertmesh/internal/v1/worker.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "model/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "tests/util/cpu_engine.h"
#include "tests/worker/engine/grammar_test_util.h"
#include "tests/worker/models/model_test_util.h"
#include "worker/grammar/grammar_compiler.h"
#include "worker/service/worker_server.h"
#include "worker/serving/engine_adapter.h"
#include "worker/serving/engine_loop.h"

namespace expertmesh::server {
namespace {

namespace api = ::expertmesh::internal::v1;

std::string RouterId(const std::string& name) {
  return absl::StrFormat("rq-%016x%016x", std::hash<std::string>{}(name), name.size());
}

struct StreamResult {
  std::vector<int32_t> tokens;
  api::StopReason stop = api::STOP_REASON_UNSPECIFIED;
  grpc::Status status;
};

class WorkerGrammarTest : public ::testing::Test {
 protected:
  void Start(bool with_grammars) {
    auto dir = models::testing::MakeTestModel(model::Architecture::kQwen3Moe, "tiny", "grammar");
    ASSERT_TRUE(dir.ok()) << dir.status();
    auto tok = tokenizer::Tokenizer::LoadFromDirectory(*dir);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = *std::move(tok);
    engine::EngineOptions o;
    o.compute_dtype = DType::kF32;
    o.block_size = 4;
    o.max_model_len = 256;
    o.kv_cache_bytes = 16u << 20;
    auto engine = expertmesh::testing::LoadCpuEngine(*dir, o, /*threads=*/2);
    ASSERT_TRUE(engine.ok()) << engine.status();
    for (int64_t id : (*engine)->config().eos_token_ids) eos_.push_back(static_cast<int32_t>(id));
    WorkerServiceOptions service;
    if (with_grammars) {
      auto compiler = worker::GrammarCompiler::ForModel(*dir, (*engine)->config());
      ASSERT_TRUE(compiler.ok()) << compiler.status();
      service.grammars = *std::move(compiler);
    }
    loop_ = std::make_unique<EngineLoop>(
        std::make_unique<EngineAdapter>(*std::move(engine), "tiny"), EngineLoopOptions{});
    loop_->Start();
    auto server =
        WorkerServer::Start(loop_.get(), {.host = "127.0.0.1", .port = 0, .service = service});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = api::Worker::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                                     grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    server_.reset();
    loop_.reset();
  }

  api::SubmitRequest Request(const std::string& id, const std::string& grammar, uint32_t seed,
                             uint32_t max_tokens) {
    api::SubmitRequest r;
    r.set_request_id(RouterId(id));
    auto prompt = tokenizer_->Encode("Give me JSON " + id, false);
    EXPECT_TRUE(prompt.ok());
    for (int32_t t : *prompt) r.add_prompt_token_ids(t);
    r.set_max_tokens(max_tokens);
    r.mutable_sampling()->set_temperature(1.0f);
    r.mutable_sampling()->set_seed(seed);
    r.set_grammar(grammar);
    return r;
  }

  StreamResult Run(const api::SubmitRequest& request) {
    grpc::ClientContext context;
    StreamResult result;
    auto reader = stub_->Submit(&context, request);
    api::SubmitResponse response;
    while (reader->Read(&response)) {
      for (const api::GeneratedToken& t : response.tokens()) result.tokens.push_back(t.token_id());
      if (response.stop_reason() != api::STOP_REASON_UNSPECIFIED) {
        result.stop = response.stop_reason();
      }
    }
    result.status = reader->Finish();
    return result;
  }

  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  std::vector<int32_t> eos_;
  std::unique_ptr<EngineLoop> loop_;
  std::unique_ptr<WorkerServer> server_;
  std::unique_ptr<api::Worker::Stub> stub_;
};

TEST_F(WorkerGrammarTest, JsonObjectStreamsParseAndEndWithEos) {
  Start(/*with_grammars=*/true);
  for (uint32_t seed = 1; seed <= 4; ++seed) {
    SCOPED_TRACE(seed);
    const uint32_t max_tokens = 10 + 6 * seed;
    StreamResult r = Run(Request("json" + std::to_string(seed),
                                 expertmesh::testing::kJsonObjectGbnf, seed, max_tokens));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.stop, api::STOP_REASON_EOS);
    ASSERT_FALSE(r.tokens.empty());
    EXPECT_LE(r.tokens.size(), max_tokens);
    EXPECT_NE(std::find(eos_.begin(), eos_.end(), r.tokens.back()), eos_.end());
    const std::string text = expertmesh::testing::TextOf(
        *tokenizer_, std::span<const int32_t>(r.tokens).first(r.tokens.size() - 1));
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    EXPECT_TRUE(!j.is_discarded() && j.is_object()) << text;
  }
}

TEST_F(WorkerGrammarTest, RefusesBadGrammarsAndKeepsServing) {
  Start(/*with_grammars=*/true);
  StreamResult bad = Run(Request("bad", "root ::= \"a\" missing", 1, 8));
  EXPECT_EQ(bad.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(bad.status.error_message().find("grammar: "), std::string::npos)
      << bad.status.error_message();
  EXPECT_TRUE(bad.tokens.empty());
  api::SubmitRequest ignore = Request("ignore", expertmesh::testing::kChoiceGbnf, 1, 8);
  ignore.set_ignore_eos(true);
  StreamResult refused = Run(ignore);
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(refused.status.error_message().find("ignore_eos"), std::string::npos);
  StreamResult ok = Run(Request("ok", expertmesh::testing::kChoiceGbnf, 1, 8));
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_EQ(ok.stop, api::STOP_REASON_EOS);
}

TEST_F(WorkerGrammarTest, WorkerWithoutVocabularyRefusesGrammars) {
  Start(/*with_grammars=*/false);
  StreamResult r = Run(Request("none", expertmesh::testing::kChoiceGbnf, 1, 8));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(r.status.error_message().find("grammar"), std::string::npos);
  // Without a grammar the same worker serves.
  StreamResult plain = Run(Request("plain", "", 1, 4));
  EXPECT_TRUE(plain.status.ok()) << plain.status.error_message();
  EXPECT_FALSE(plain.tokens.empty());
}

}  // namespace
}  // namespace expertmesh::server
