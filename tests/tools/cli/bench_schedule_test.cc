#include "tools/cli/bench_schedule.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>

#include "gtest/gtest.h"

namespace expertmesh::cli::bench {
namespace {

std::string Scratch(const std::string& name) {
  const std::string dir = std::string(EXPERTMESH_BINARY_DIR) + "/test-scratch/bench_schedule";
  std::filesystem::create_directories(dir);
  return dir + "/" + name + "." + std::to_string(::getpid());
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

PromptSpec TokenSpec() {
  PromptSpec spec;
  spec.kind = PromptSpec::Kind::kTokens;
  spec.prompt_tokens = 32;
  spec.output_tokens = 8;
  spec.vocab_size = 1000;
  return spec;
}

TEST(BenchScheduleTest, ParsesRates) {
  EXPECT_EQ(*ParseRate("4"), 4.0);
  EXPECT_EQ(*ParseRate(" 0.5 "), 0.5);
  EXPECT_TRUE(std::isinf(*ParseRate("inf")));
  EXPECT_TRUE(std::isinf(*ParseRate("INF")));
  for (const char* bad : {"0", "-1", "fast", "", "nan"}) {
    EXPECT_FALSE(ParseRate(bad).ok()) << bad;
  }
  EXPECT_EQ(RateLabel(4), "4");
  EXPECT_EQ(RateLabel(0.5), "0.5");
  EXPECT_EQ(RateLabel(*ParseRate("inf")), "inf");
}

TEST(BenchScheduleTest, PoissonArrivalsAreSeededAndHaveTheRate) {
  const std::vector<double> a = PoissonArrivals(10, 4000, 3);
  EXPECT_EQ(a, PoissonArrivals(10, 4000, 3));
  EXPECT_NE(a, PoissonArrivals(10, 4000, 4));
  ASSERT_EQ(a.size(), 4000u);
  EXPECT_EQ(a.front(), 0.0);
  for (size_t i = 1; i < a.size(); ++i) ASSERT_GE(a[i], a[i - 1]);
  // 3999 exponential gaps of mean 0.1 s: the mean is within a few percent of it.
  const double mean_gap = a.back() / 3999.0;
  EXPECT_NEAR(mean_gap, 0.1, 0.01);
  for (double t : PoissonArrivals(*ParseRate("inf"), 5, 1)) EXPECT_EQ(t, 0.0);
}

TEST(BenchScheduleTest, GeneratedPromptsAreDistinctInRangeAndSeeded) {
  absl::StatusOr<Schedule> s = GenerateSchedule(4, 20, 1, 0, TokenSpec());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->name, "rate=4 count=20 seed=1");
  EXPECT_EQ(s->source, "generated");
  ASSERT_EQ(s->requests.size(), 20u);
  std::set<std::vector<int32_t>> prompts;
  for (const ScheduledRequest& r : s->requests) {
    ASSERT_EQ(r.prompt_ids.size(), 32u);
    EXPECT_EQ(r.max_tokens, 8);
    for (int32_t id : r.prompt_ids) {
      EXPECT_GE(id, 2);
      EXPECT_LT(id, 1000);
    }
    prompts.insert(r.prompt_ids);
  }
  EXPECT_EQ(prompts.size(), 20u);
  // Another schedule index (the next rate of a run) gets other prompts; the same one the same.
  absl::StatusOr<Schedule> same = GenerateSchedule(4, 20, 1, 0, TokenSpec());
  absl::StatusOr<Schedule> next = GenerateSchedule(4, 20, 1, 1, TokenSpec());
  EXPECT_EQ(same->requests[0].prompt_ids, s->requests[0].prompt_ids);
  EXPECT_NE(next->requests[0].prompt_ids, s->requests[0].prompt_ids);
}

TEST(BenchScheduleTest, WordPromptsHaveTheWordCount) {
  PromptSpec spec;
  spec.kind = PromptSpec::Kind::kWords;
  spec.prompt_tokens = 12;
  absl::StatusOr<Schedule> s = GenerateSchedule(*ParseRate("inf"), 3, 1, 0, spec);
  ASSERT_TRUE(s.ok()) << s.status();
  for (const ScheduledRequest& r : s->requests) {
    EXPECT_TRUE(r.prompt_ids.empty());
    EXPECT_EQ(std::count(r.prompt_text.begin(), r.prompt_text.end(), ' '), 11);
    EXPECT_EQ(r.arrival_s, 0.0);
  }
}

TEST(BenchScheduleTest, TokenPromptsNeedTheVocabulary) {
  PromptSpec spec = TokenSpec();
  spec.vocab_size = 0;
  absl::StatusOr<Schedule> s = GenerateSchedule(4, 2, 1, 0, spec);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("--vocab-size"), std::string::npos);
}

TEST(BenchScheduleTest, ReadsScheduleDotPyFiles) {
  const std::string path = Scratch("sched.txt");
  WriteText(path, "# rate=16 count=3 seed=1\n0.000000\n0.052000\n0.130000\n");
  absl::StatusOr<std::vector<Schedule>> read = ReadScheduleFile(path, TokenSpec(), 1, 0);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), 1u);
  const Schedule& s = (*read)[0];
  EXPECT_EQ(s.name, "rate=16 count=3 seed=1");  // what hf_bench.py calls it
  ASSERT_TRUE(s.rate.has_value());
  EXPECT_EQ(*s.rate, 16.0);
  ASSERT_EQ(s.requests.size(), 3u);
  EXPECT_DOUBLE_EQ(s.requests[1].arrival_s, 0.052);
  EXPECT_EQ(s.requests[2].prompt_ids.size(), 32u);
  EXPECT_EQ(s.requests[2].max_tokens, 8);

  WriteText(path, "# rate=inf count=2 seed=1\n0\n0\n");
  read = ReadScheduleFile(path, TokenSpec(), 1, 0);
  ASSERT_TRUE(read.ok());
  EXPECT_TRUE(std::isinf(*(*read)[0].rate));

  WriteText(path, "# rate=4\n0.5\n0.25\n");
  read = ReadScheduleFile(path, TokenSpec(), 1, 0);
  ASSERT_FALSE(read.ok());
  EXPECT_NE(read.status().message().find("decrease"), std::string::npos);
  WriteText(path, "# rate=4\n0.5\nsoon\n");
  read = ReadScheduleFile(path, TokenSpec(), 1, 0);
  ASSERT_FALSE(read.ok());
  EXPECT_NE(read.status().message().find("line 3"), std::string::npos);
  WriteText(path, "# rate=4\n");
  EXPECT_FALSE(ReadScheduleFile(path, TokenSpec(), 1, 0).ok());
  EXPECT_EQ(ReadScheduleFile(path + ".missing", TokenSpec(), 1, 0).status().code(),
            absl::StatusCode::kNotFound);
  std::filesystem::remove(path);
}

TEST(BenchScheduleTest, SavedSchedulesReplayExactly) {
  absl::StatusOr<Schedule> tokens = GenerateSchedule(8, 5, 2, 0, TokenSpec());
  PromptSpec words;
  words.prompt_tokens = 6;
  words.output_tokens = 3;
  absl::StatusOr<Schedule> text = GenerateSchedule(*ParseRate("inf"), 2, 2, 1, words);
  ASSERT_TRUE(tokens.ok() && text.ok());
  const std::string path = Scratch("saved.json");
  ASSERT_TRUE(WriteSchedules(path, {*tokens, *text}).ok());
  // The spec passed to the reader does not matter: the file has its prompts.
  PromptSpec other = TokenSpec();
  other.prompt_tokens = 1;
  absl::StatusOr<std::vector<Schedule>> read = ReadScheduleFile(path, other, 99, 5);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), 2u);
  for (int k = 0; k < 2; ++k) {
    const Schedule& want = k == 0 ? *tokens : *text;
    const Schedule& got = (*read)[k];
    EXPECT_EQ(got.name, want.name);
    EXPECT_EQ(got.source, path);
    ASSERT_TRUE(got.rate.has_value());
    EXPECT_EQ(*got.rate, *want.rate);
    ASSERT_EQ(got.requests.size(), want.requests.size());
    for (size_t i = 0; i < got.requests.size(); ++i) {
      EXPECT_DOUBLE_EQ(got.requests[i].arrival_s, want.requests[i].arrival_s);
      EXPECT_EQ(got.requests[i].prompt_ids, want.requests[i].prompt_ids);
      EXPECT_EQ(got.requests[i].prompt_text, want.requests[i].prompt_text);
      EXPECT_EQ(got.requests[i].max_tokens, want.requests[i].max_tokens);
    }
  }

  WriteText(path, R"({"format": "something else", "schedules": []})");
  EXPECT_FALSE(ReadScheduleFile(path, other, 1, 0).ok());
  WriteText(path, R"({"format": "expertmesh-bench-schedule/1", "schedules": [{"name": 3,
      "requests": [{"arrival_s": 0, "prompt": {"no": 1}, "max_tokens": 4}]}]})");
  absl::StatusOr<std::vector<Schedule>> bad = ReadScheduleFile(path, other, 1, 0);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("prompt"), std::string::npos);
  WriteText(path, R"({"format": "expertmesh-bench-schedule/1", "schedules": [{"rate": "x",
      "requests": [{"arrival_s": 0, "prompt": "hi", "max_tokens": 4}]}]})");
  EXPECT_FALSE(ReadScheduleFile(path, other, 1, 0).ok());
  WriteText(path, "{ not json");
  EXPECT_FALSE(ReadScheduleFile(path, other, 1, 0).ok());
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace expertmesh::cli::bench
