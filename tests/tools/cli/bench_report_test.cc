#include "tools/cli/bench_report.h"

#include <cmath>

#include "gtest/gtest.h"
#include "tools/cli/bench_client.h"

namespace expertmesh::cli::bench {
namespace {

TEST(BenchReportTest, NearestRankQuantiles) {
  EXPECT_EQ(Quantile({}, 0.5), 0);
  EXPECT_EQ(Quantile({3, 1, 2}, 0.5), 2);
  EXPECT_EQ(Quantile({3, 1, 2}, 0.0), 1);
  EXPECT_EQ(Quantile({3, 1, 2}, 1.0), 3);
  std::vector<double> hundred;
  for (int i = 100; i >= 1; --i) hundred.push_back(i);
  EXPECT_EQ(Quantile(hundred, 0.99), 99);  // sorted[round(0.99 * 99)] = sorted[98]
  const Distribution d = Summarize(std::vector<double>{1, 2, 3, 10});
  EXPECT_EQ(d.count, 4);
  EXPECT_DOUBLE_EQ(d.mean, 4);
  EXPECT_EQ(d.p50, 3);  // sorted[round(1.5)] = sorted[2]
  EXPECT_EQ(d.p99, 10);
  EXPECT_EQ(d.max, 10);
}

RequestResult Ok(double ttft, double e2e, int64_t tokens, double end) {
  RequestResult r;
  r.ok = true;
  r.ttft_s = ttft;
  r.e2e_s = e2e;
  r.end_s = end;
  r.output_tokens = tokens;
  r.tokens_from_usage = true;
  r.prompt_tokens = 10;
  r.max_tokens = 5;
  return r;
}

RequestResult Failed(const std::string& kind, const std::string& message, double end) {
  RequestResult r;
  r.error_kind = kind;
  r.error = message;
  r.end_s = end;
  return r;
}

TEST(BenchReportTest, SummarizesCompletedAndFailedRequests) {
  Schedule s;
  s.name = "rate=4 count=4 seed=1";
  s.source = "generated";
  s.rate = 4;
  s.requests.resize(4);
  std::vector<RequestResult> results = {Ok(0.1, 0.5, 5, 1.0), Ok(0.2, 1.0, 5, 2.0),
                                        Failed("http 429", "HTTP 429: busy", 0.5),
                                        Failed("http 429", "HTTP 429: still busy", 0.6)};
  results[1].cached_tokens = 4;
  results[1].send_lag_s = 0.25;
  results[0].retries = 1;
  const ScheduleReport r = Summarize(s, results);
  EXPECT_EQ(r.requests, 4);
  EXPECT_EQ(r.completed, 2);
  EXPECT_EQ(r.failed, 2);
  EXPECT_EQ(r.errors.at("http 429"), 2);
  EXPECT_EQ(r.first_errors.at("http 429"), "HTTP 429: busy");
  EXPECT_DOUBLE_EQ(r.duration_s, 2.0);
  EXPECT_EQ(r.output_tokens, 10);
  EXPECT_DOUBLE_EQ(r.output_throughput, 5.0);
  EXPECT_DOUBLE_EQ(r.request_throughput, 1.0);
  EXPECT_EQ(r.prompt_tokens, 20);
  EXPECT_EQ(r.cached_prompt_tokens, 4);
  EXPECT_EQ(r.connection_retries, 1);
  EXPECT_DOUBLE_EQ(r.max_send_lag_ms, 250);
  EXPECT_EQ(r.short_outputs, 0);
  // TPOT: (0.5 - 0.1) / 4 and (1.0 - 0.2) / 4 seconds.
  EXPECT_NEAR(r.tpot_ms.mean, 150, 1e-9);
  EXPECT_NEAR(r.ttft_ms.p50, 200, 1e-9);
  EXPECT_NEAR(r.e2e_ms.max, 1000, 1e-9);

  const nlohmann::json j = ReportJson(r);
  EXPECT_EQ(j["rate"], 4.0);
  EXPECT_EQ(j["completed"], 2);
  EXPECT_EQ(j["errors"]["http 429"]["count"], 2);
  EXPECT_EQ(j["ttft_ms"]["count"], 2);
  const std::string record = ReportRecord(r, "expertmesh_http");
  EXPECT_EQ(record.rfind("serving engine=expertmesh_http schedule=\"rate=4 count=4 seed=1\" ", 0),
            0u);
  EXPECT_NE(record.find(" output_tok_s=5.0 "), std::string::npos);
  EXPECT_NE(ReportText(r).find("HTTP 429: busy"), std::string::npos);

  s.rate = std::numeric_limits<double>::infinity();
  EXPECT_EQ(ReportJson(Summarize(s, results))["rate"], "inf");
}

TEST(BenchReportTest, CountsShortOutputsAndMissingUsage) {
  Schedule s;
  s.requests.resize(2);
  std::vector<RequestResult> results = {Ok(0.1, 0.2, 2, 0.2), Ok(0.1, 0.1, 1, 0.1)};
  results[1].tokens_from_usage = false;
  const ScheduleReport r = Summarize(s, results);
  EXPECT_EQ(r.short_outputs, 2);
  EXPECT_EQ(r.tokens_counted_from_chunks, 1);
  EXPECT_EQ(r.tpot_ms.count, 1);  // a one-token request has no TPOT
}

TEST(BenchUrlTest, ParsesBaseUrls) {
  absl::StatusOr<Endpoint> e = ParseUrl("http://127.0.0.1:8000");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->host, "127.0.0.1");
  EXPECT_EQ(e->port, 8000);
  EXPECT_EQ(e->base_path, "");
  e = ParseUrl("http://localhost:9000/v1/");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->base_path, "");
  EXPECT_EQ(e->ToString(), "http://localhost:9000");
  e = ParseUrl("http://gateway/llm/v1");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->port, 80);
  EXPECT_EQ(e->base_path, "/llm");
  e = ParseUrl("[::1]:8080");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->host, "::1");
  EXPECT_EQ(e->port, 8080);
  EXPECT_EQ(e->Origin(), "http://[::1]:8080");
  e = ParseUrl("https://secure.example/v1");
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->https);
  EXPECT_EQ(e->port, 443);
  EXPECT_EQ(e->Origin(), "https://secure.example:443");
  for (const char* bad : {"ftp://x", "http://:80", "http://x:0", "http://x:port", "http://[::1"}) {
    EXPECT_FALSE(ParseUrl(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace expertmesh::cli::bench
