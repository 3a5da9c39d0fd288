#include "model/grammar/engine/grammar_cache.h"

#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/model/grammar/engine/test_grammars.h"

namespace expertmesh::grammar {
namespace {

TEST(GrammarCacheTest, SameTextSameObjectAndLeastRecentlyUsedEvicted) {
  const testing::SmallVocab sv = testing::MakeSmallVocab();
  GrammarCache cache(sv.vocab, 2);
  auto a = cache.Get("root ::= \"a\"+");
  ASSERT_TRUE(a.ok()) << a.status();
  auto a2 = cache.Get("root ::= \"a\"+");
  ASSERT_TRUE(a2.ok());
  EXPECT_EQ(a->get(), a2->get());
  auto b = cache.Get("root ::= \"b\"+");
  ASSERT_TRUE(b.ok());
  EXPECT_NE(a->get(), b->get());
  EXPECT_EQ(cache.size(), 2u);
  // Touch a, then add c: b is the least recently used and goes.
  ASSERT_TRUE(cache.Get("root ::= \"a\"+").ok());
  auto c = cache.Get("root ::= [c-d]");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.Get("root ::= \"a\"+")->get(), a->get());
  auto b2 = cache.Get("root ::= \"b\"+");
  ASSERT_TRUE(b2.ok());
  EXPECT_NE(b2->get(), b->get()) << "b was evicted and compiled again";
  EXPECT_EQ(cache.size(), 2u);
}

TEST(GrammarCacheTest, ErrorsAreReportedAndNotCached) {
  const testing::SmallVocab sv = testing::MakeSmallVocab();
  GrammarCache cache(sv.vocab, 4);
  EXPECT_EQ(cache.Get("root ::= undefined-rule").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache.Get("root ::= root \"x\" | \"y\"").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache.Get("root ::= ((").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache.size(), 0u);
}

TEST(GrammarCacheTest, AGrammarPastTheCompileLimitsIsRefusedOnceAndRemembered) {
  const testing::SmallVocab sv = testing::MakeSmallVocab();
  GrammarCache cache(sv.vocab, 4, {.max_trie_steps = 1000});
  const std::string big = "root ::= [ -~]{500}";
  const auto first = cache.Get(big);
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.status().code(), absl::StatusCode::kResourceExhausted) << first.status();
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(cache.Get(big).status(), first.status());
  EXPECT_TRUE(cache.Get("root ::= \"a\"").ok()) << "small grammars still compile";
  EXPECT_EQ(cache.size(), 2u);
}

TEST(GrammarCacheTest, ConcurrentGetsAgreeOnOneObjectPerText) {
  const testing::SmallVocab sv = testing::MakeSmallVocab();
  GrammarCache cache(sv.vocab, 8);
  const std::vector<std::string> texts = {"root ::= \"x\" [0-9]*", "root ::= [a-z]+ \"!\"",
                                          "root ::= \"{\" [^}]* \"}\""};
  constexpr int kThreads = 4;
  std::vector<std::vector<const CompiledGrammar*>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 50; ++rep) {
        for (const std::string& text : texts) {
          auto g = cache.Get(text);
          got[t].push_back(g.ok() ? g->get() : nullptr);
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  // After the first round every Get returns the object the cache kept.
  for (size_t k = 0; k < texts.size(); ++k) {
    const CompiledGrammar* kept = cache.Get(texts[k])->get();
    for (int t = 0; t < kThreads; ++t) {
      for (size_t i = texts.size() + k; i < got[t].size(); i += texts.size()) {
        EXPECT_EQ(got[t][i], kept) << "thread " << t << " call " << i;
      }
    }
  }
}

}  // namespace
}  // namespace expertmesh::grammar
