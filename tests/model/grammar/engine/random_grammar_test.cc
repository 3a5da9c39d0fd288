// Property test: random grammars (nested sequences, choices, repeats, classes with multi-byte
// code points, calls forward and, after a consumed literal, backward: recursion without left
// recursion) walked with the engine and the brute-force reference side by side.
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "model/grammar/engine/compiled_grammar.h"
#include "model/grammar/engine/validate.h"
#include "tests/model/grammar/engine/test_grammars.h"
#include "tests/model/grammar/engine/walk_checker.h"

namespace expertmesh::grammar {
namespace {

constexpr int kRules = 4;

class RandomGrammar {
 public:
  explicit RandomGrammar(uint32_t seed) : rng_(seed) {}

  Grammar Make() {
    Grammar g;
    for (int r = 0; r < kRules; ++r) {
      g.rules.push_back({r == 0 ? "root" : absl::StrCat("r", r), Gen(r, 0, /*after_byte=*/false)});
    }
    return g;
  }

 private:
  int Pick(int n) { return static_cast<int>(rng_() % n); }

  Expr Leaf(int rule, bool after_byte) {
    static const char* kLiterals[] = {"a", "b", "ab", "(", ")", "é", "中", "x<", "\"", ","};
    switch (Pick(4)) {
      case 0:
        return Expr::Literal(kLiterals[Pick(10)]);
      case 1: {
        const bool negated = Pick(3) == 0;
        std::vector<CodePointRange> ranges = {{'a', 'c'}};
        if (Pick(2)) ranges.push_back({0xE0, 0xEF});
        if (Pick(2)) ranges.push_back({0x4E00, 0x4E2F});
        if (negated) ranges = {{'a', 'a'}, {'(', ')'}};
        return Expr::CharClass(ranges, negated);
      }
      default: {
        // Forward calls anywhere; calls back (or to itself) only after a consumed byte.
        const int lo = after_byte ? 0 : rule + 1;
        if (lo >= kRules) return Expr::Literal("b");
        const int target = lo + Pick(kRules - lo);
        return Expr::Ref(target == 0 ? "root" : absl::StrCat("r", target));
      }
    }
  }

  Expr Gen(int rule, int depth, bool after_byte) {
    if (depth >= 3) return Leaf(rule, after_byte);
    switch (Pick(5)) {
      case 0: {
        // A sequence that opens with a literal, so later items may call back.
        std::vector<Expr> items{Expr::Literal(Pick(2) ? "(" : "a")};
        const int n = 1 + Pick(3);
        for (int i = 0; i < n; ++i) items.push_back(Gen(rule, depth + 1, true));
        return Expr::Sequence(std::move(items));
      }
      case 1: {
        std::vector<Expr> items;
        const int n = 2 + Pick(2);
        for (int i = 0; i < n; ++i) items.push_back(Gen(rule, depth + 1, after_byte));
        if (Pick(4) == 0) items.push_back(Expr::Empty());
        return Expr::Choice(std::move(items));
      }
      case 2: {
        const int lo = Pick(2);
        const int hi = Pick(3) == 0 ? kUnbounded : lo + 1 + Pick(2);
        // A repeat's later copies follow its earlier ones: only after_byte when lo >= 1 is not
        // enough (the item may be empty), so keep the caller's flag.
        return Expr::Repeat(Gen(rule, depth + 1, after_byte), lo, hi);
      }
      default:
        return Leaf(rule, after_byte);
    }
  }

  std::mt19937 rng_;
};

TEST(RandomGrammarTest, EngineMatchesTheReference) {
  const testing::SmallVocab sv = testing::MakeSmallVocab();
  int checked = 0;
  for (uint32_t seed = 1; seed <= 150; ++seed) {
    const Grammar g = RandomGrammar(seed).Make();
    if (!ValidateGrammar(g).ok()) continue;  // e.g. a root that can never complete
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    auto compiled = CompiledGrammar::Compile(g, sv.vocab);
    ASSERT_TRUE(compiled.ok()) << compiled.status();
    testing::WalkOptions options;
    options.walks = 2;
    options.random_steps = 12;
    options.seed = seed;
    if (testing::CheckRandomWalks(g, *compiled, options) >= options.walks * 2) ++checked;
    if (HasFatalFailure()) return;
  }
  EXPECT_GT(checked, 60);
}

}  // namespace
}  // namespace expertmesh::grammar
