// Issue 14's reliability checks that are about the router alone: what careless and hostile
// clients send must not make the router grow. A user measured +23 MB of router RSS per rejected
// 200k-token prompt, +190 MB per 3.9 MB prompt, and gigabytes from two chunked 50 MB bodies,
// none of it ever returned. Here the same traffic goes through a real router (HTTP front door,
// tokenizer, validation) in this process, with the allocator policy router/main.cc sets, and the
// test prints the resident set before and after.
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/malloc_policy.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/router/http/raw_client.h"
#include "tests/router/router_fixture.h"

namespace expertmesh::router::testing {
namespace {

using json = nlohmann::json;

constexpr size_t kMiB = 1 << 20;

// Prose-like text of about `bytes` bytes: words of varying length, as a pasted document.
std::string Prose(size_t bytes, int seed) {
  static const char* const kWords[] = {"the",     "router",  "keeps",   "serving",   "while",
                                       "clients", "send",    "prompts", "longer",    "than",
                                       "context", "allows,", "and",     "every",     "reject",
                                       "returns", "memory",  "it",      "allocated", "quickly."};
  std::string text;
  text.reserve(bytes + 16);
  for (uint32_t i = seed; text.size() < bytes; i = i * 1103515245u + 12345u) {
    text += kWords[(i >> 16) % 20];
    text += (i & 0x700) == 0 ? "\n" : " ";
  }
  return text;
}

class ReliabilityTest : public RouterFixture {};

TEST_F(ReliabilityTest, RejectedPromptsAndChunkedBodiesLeaveTheRouterWhereItWas) {
  ReturnLargeFreedBlocksToTheSystem();  // as router/main.cc does
  StartWorkers(1);
  StartRouter();
  // The model's context is 4,096 tokens and the body limit 4 MiB: every prompt below is
  // tokenized (it fits the body limit) and then refused for its length, in four shapes.
  struct Shape {
    const char* name;
    size_t bytes;
    int64_t max_tokens;  // 0: not sent
  };
  const Shape shapes[] = {
      {"8k-token prompt", 40 * 1024, 0},
      {"3k-token prompt whose max_tokens overflows the context", 12 * 1024, 4000},
      {"1 MB prompt", kMiB, 0},
      {"3.9 MB prompt", 3900 * 1024, 0},
  };
  // One accepted request first, so that the router's steady state (threads, caches, channels
  // to the worker) is in the baseline.
  ASSERT_EQ(Post("/v1/completions", {{"prompt", "hello"}, {"max_tokens", 2}})->status, 200);

  const size_t rss_before = ResidentBytes();
  constexpr int kPrompts = 200;
  constexpr int kClients = 4;  // several handler threads each tokenize big prompts
  std::atomic<int> next{0}, rejected{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      for (int i = next++; i < kPrompts; i = next++) {
        const Shape& shape = shapes[i % 4];
        json body = {{"prompt", Prose(shape.bytes, i)}};
        if (shape.max_tokens > 0) body["max_tokens"] = shape.max_tokens;
        httplib::Result r = Post("/v1/completions", body);
        if (r && r->status == 400 && r->body.find("context length") != std::string::npos) {
          ++rejected;
        } else {
          ADD_FAILURE() << shape.name << ": " << (r ? r->status : 0) << " "
                        << (r ? r->body.substr(0, 200) : "");
        }
      }
    });
  }
  for (std::thread& t : clients) t.join();
  const size_t rss_after_prompts = ResidentBytes();

  constexpr int kChunkedBodies = 20;
  int refused = 0;
  for (int i = 0; i < kChunkedBodies; ++i) {
    RawClient c(router_->http_port());
    ASSERT_TRUE(
        c.Send("POST /v1/completions HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"
               "Transfer-Encoding: chunked\r\n\r\n"));
    const std::string chunk = absl::StrCat("100000\r\n", std::string(kMiB, 'a'), "\r\n");
    for (size_t sent = 0; sent < 20 * kMiB && c.Send(chunk);) sent += kMiB;
    if (StatusOf(c.ReadResponse(absl::Seconds(30))) == 413) ++refused;
  }
  const size_t rss_after = ResidentBytes();

  std::printf(
      "router RSS: %.1f MiB before, %.1f MiB after %d rejected over-long prompts (%d up to "
      "3.9 MB, %d client threads), %.1f MiB after %d chunked 20 MiB bodies; peak %.1f MiB\n",
      rss_before / double(kMiB), rss_after_prompts / double(kMiB), kPrompts, kPrompts, kClients,
      rss_after / double(kMiB), kChunkedBodies, PeakResidentBytes() / double(kMiB));
  EXPECT_EQ(rejected.load(), kPrompts);
  EXPECT_EQ(refused, kChunkedBodies);
  // The bound: within 50 MB of where the router started.
  EXPECT_LT(rss_after_prompts, rss_before + 50 * 1000 * 1000);
  EXPECT_LT(rss_after, rss_before + 50 * 1000 * 1000);
  // And it still serves; nothing rejected ever reached the worker.
  EXPECT_EQ(Post("/v1/completions", {{"prompt", "hello"}, {"max_tokens", 2}})->status, 200);
  EXPECT_EQ(workers_[0]->submitted(), 2);
}

}  // namespace
}  // namespace expertmesh::router::testing
