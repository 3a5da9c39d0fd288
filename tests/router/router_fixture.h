// Test fixture: a real RouterServer (HTTP + gRPC on loopback, port 0) in front of in-process
// fake workers, with a tiny model made by make-model for the tokenizer and chat template.
// Health/load polling is manual (PollOnce) so tests never wait on timers.
#ifndef EXPERTMESH_TESTS_ROUTER_ROUTER_FIXTURE_H_
#define EXPERTMESH_TESTS_ROUTER_ROUTER_FIXTURE_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "expertmesh/v1/inference.grpc.pb.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "router/router_server.h"
#include "tests/router/fake_worker.h"

namespace expertmesh::router::testing {

// The SSE "data:" payloads of a response body, parsed; `done` tells whether [DONE] came last.
std::vector<nlohmann::json> ParseSse(const std::string& body, bool* done);

class RouterFixture : public ::testing::Test {
 protected:
  // The model directory (made once per test binary).
  static const std::string& ModelDir();

  void StartWorkers(int n, FakeWorkerOptions options = {});
  void StartRouter(const std::function<void(RouterServerOptions&)>& edit = {});
  void TearDown() override;

  std::unique_ptr<httplib::Client> Http() const;
  std::unique_ptr<::expertmesh::v1::Inference::Stub> Grpc() const;
  // POSTs JSON; returns the response (status, body, headers).
  httplib::Result Post(const std::string& path, const nlohmann::json& body,
                       const std::string& api_key = "") const;
  std::vector<int32_t> Encode(const std::string& text) const;
  std::string Decode(const std::vector<int32_t>& ids) const;

  std::vector<std::unique_ptr<FakeWorker>> workers_;
  std::unique_ptr<RouterServer> router_;
};

}  // namespace expertmesh::router::testing

#endif  // EXPERTMESH_TESTS_ROUTER_ROUTER_FIXTURE_H_
