#include "tests/router/router_fixture.h"

#include <csignal>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "tests/util/shared_model.h"
#include "tools/make_model/make_model.h"

namespace expertmesh::router::testing {

std::vector<nlohmann::json> ParseSse(const std::string& body, bool* done) {
  std::vector<nlohmann::json> events;
  *done = false;
  for (absl::string_view block : absl::StrSplit(body, "\n\n", absl::SkipEmpty())) {
    if (!absl::ConsumePrefix(&block, "data: ")) continue;
    if (block == "[DONE]") {
      *done = true;
      continue;
    }
    events.push_back(nlohmann::json::parse(std::string(block)));
  }
  return events;
}

const std::string& RouterFixture::ModelDir() {
  static const std::string dir = [] {
    std::signal(SIGPIPE, SIG_IGN);
    const std::string out = std::string(EXPERTMESH_BINARY_DIR) + "/test-scratch/router/model";
    make_model::MakeModelOptions options;
    options.arch = model::Architecture::kQwen3Moe;
    options.size = "tiny";
    options.out_dir = out;
    absl::StatusOr<std::string> made = expertmesh::testing::MakeSharedModel(options);
    if (!made.ok()) ADD_FAILURE() << made.status();
    return out;
  }();
  return dir;
}

void RouterFixture::StartWorkers(int n, FakeWorkerOptions options) {
  for (int i = 0; i < n; ++i) {
    absl::StatusOr<std::unique_ptr<FakeWorker>> w = FakeWorker::Start("127.0.0.1:0", options);
    ASSERT_TRUE(w.ok()) << w.status();
    workers_.push_back(*std::move(w));
  }
}

void RouterFixture::StartRouter(const std::function<void(RouterServerOptions&)>& edit) {
  RouterServerOptions o;
  o.model_dir = ModelDir();
  o.model_name = "tiny";
  for (auto& w : workers_) o.pool.targets.push_back(w->address());
  o.pool.poll_interval = absl::Hours(1);  // tests poll by hand
  if (edit) edit(o);
  absl::StatusOr<std::unique_ptr<RouterServer>> r = RouterServer::Start(std::move(o));
  ASSERT_TRUE(r.ok()) << r.status();
  router_ = *std::move(r);
}

void RouterFixture::TearDown() {
  if (router_) router_->Shutdown(absl::ZeroDuration());
  router_.reset();
  workers_.clear();
}

std::unique_ptr<httplib::Client> RouterFixture::Http() const {
  auto c = std::make_unique<httplib::Client>("127.0.0.1", router_->http_port());
  c->set_read_timeout(30, 0);
  return c;
}

std::unique_ptr<::expertmesh::v1::Inference::Stub> RouterFixture::Grpc() const {
  return ::expertmesh::v1::Inference::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(router_->grpc_port()), grpc::InsecureChannelCredentials()));
}

httplib::Result RouterFixture::Post(const std::string& path, const nlohmann::json& body,
                                    const std::string& api_key) const {
  httplib::Headers headers;
  if (!api_key.empty()) headers.emplace("Authorization", "Bearer " + api_key);
  return Http()->Post(path.c_str(), headers, body.dump(), "application/json");
}

std::vector<int32_t> RouterFixture::Encode(const std::string& text) const {
  return *router_->core().model().tokenizer().Encode(text, true);
}

std::string RouterFixture::Decode(const std::vector<int32_t>& ids) const {
  return router_->core().model().tokenizer().Decode(ids, true);
}

}  // namespace expertmesh::router::testing
