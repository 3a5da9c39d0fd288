#include "tests/model/grammar/engine/walk_checker.h"

#include <algorithm>
#include <optional>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "model/grammar/engine/grammar_matcher.h"
#include "tests/model/grammar/engine/reference_matcher.h"

namespace expertmesh::grammar::testing {
namespace {

bool Bit(const std::vector<uint32_t>& mask, int32_t id) { return (mask[id >> 5] >> (id & 31)) & 1; }

std::string Show(const TokenVocabulary& v, int32_t id) {
  if (id >= v.tokenizer_size()) return absl::StrCat(id, " (padding)");
  const std::string_view b = v.token_bytes(id);
  return absl::StrCat(id, " \"", absl::CEscape(absl::string_view(b.data(), b.size())), "\"");
}

// One step's comparison. `after[id]`: the reference's MinBytesAfter for text tokens.
void CheckStep(const GrammarMatcher& m, const ReferenceMatcher& ref,
               const std::vector<int64_t>& after, const std::vector<int32_t>& budget_ids,
               const std::string& where) {
  const TokenVocabulary& v = m.compiled().vocab();
  const int32_t words = v.mask_words();
  std::vector<uint32_t> mask(words + 1, 0xFFFFFFFFu);  // one guard word past the end
  m.FillNextTokenBitmask(mask);
  EXPECT_EQ(mask[words], 0u) << where << ": the word past mask_words() must be zeroed";
  const bool can_end = ref.CanEnd();
  ASSERT_EQ(m.CanTerminate(), can_end) << where;
  int mismatches = 0;
  for (int32_t id = 0; id < words * 32; ++id) {
    bool expected = false;
    if (id < v.tokenizer_size()) {
      expected = v.is_text(id) ? after[id] < kNoCompletion : v.is_eos(id) && can_end;
    }
    if (Bit(mask, id) != expected && ++mismatches <= 8) {
      ADD_FAILURE() << where << ": token " << Show(v, id) << " engine "
                    << (expected ? "forbids" : "allows") << " it, the reference "
                    << (expected ? "allows" : "forbids") << " it";
    }
  }
  ASSERT_EQ(mismatches, 0) << where;
  EXPECT_EQ(m.MinBytesToComplete(), ref.MinBytes()) << where;
  for (int32_t id : budget_ids) {
    const std::optional<int64_t> got = m.MinBytesToCompleteAfter(id);
    std::optional<int64_t> want;
    if (v.is_text(id) && after[id] < kNoCompletion) want = after[id];
    if (v.is_eos(id) && can_end) want = 0;
    EXPECT_EQ(got, want) << where << ": MinBytesToCompleteAfter " << Show(v, id);
  }
  for (int64_t budget : {int64_t{0}, int64_t{1}, int64_t{3}, int64_t{8}, int64_t{30}}) {
    std::vector<uint32_t> closing(words, 0xFFFFFFFFu);
    m.FillClosingBitmask(closing, budget);
    int bad = 0;
    for (int32_t id = 0; id < words * 32; ++id) {
      bool expected = false;
      if (id < v.tokenizer_size()) {
        expected = v.is_text(id) ? after[id] <= budget : v.is_eos(id) && can_end;
      }
      if (Bit(closing, id) != expected && ++bad <= 4) {
        ADD_FAILURE() << where << ": closing mask (budget " << budget << ") token " << Show(v, id)
                      << " engine " << Bit(closing, id) << " reference " << expected;
      }
    }
  }
}

}  // namespace

int64_t CheckRandomWalks(const Grammar& g, std::shared_ptr<const CompiledGrammar> compiled,
                         const WalkOptions& options) {
  const TokenVocabulary& v = compiled->vocab();
  std::vector<std::string_view> sorted_bytes;
  for (int32_t id : v.sorted_text_tokens()) sorted_bytes.push_back(v.token_bytes(id));
  std::mt19937 rng(options.seed);
  int64_t steps = 0;
  for (int32_t walk = 0; walk < options.walks; ++walk) {
    GrammarMatcher m(compiled);
    ReferenceMatcher ref(g);
    std::string text;
    for (int32_t step = 0;; ++step) {
      const std::string where =
          absl::StrCat("walk ", walk, " step ", step, " after \"",
                       absl::CEscape(absl::string_view(text.data(), text.size())), "\"");
      std::vector<int64_t> after(v.tokenizer_size(), kNoCompletion);
      const std::vector<int64_t> sorted_after = ref.MinBytesAfterEach(sorted_bytes);
      if (ref.exploded()) break;
      for (size_t i = 0; i < sorted_after.size(); ++i) {
        after[v.sorted_text_tokens()[i]] = sorted_after[i];
      }
      std::vector<int32_t> allowed;
      std::vector<int32_t> forbidden;
      for (int32_t id : v.sorted_text_tokens()) {
        (after[id] < kNoCompletion ? allowed : forbidden).push_back(id);
      }
      std::vector<int32_t> budget_ids;
      if (options.budget_samples <= 0) {
        for (int32_t id = 0; id < v.size(); ++id) budget_ids.push_back(id);
      } else {
        for (int32_t k = 0; k < options.budget_samples && !allowed.empty(); ++k) {
          budget_ids.push_back(allowed[rng() % allowed.size()]);
        }
        for (int32_t k = 0; k < options.budget_samples / 4 && !forbidden.empty(); ++k) {
          budget_ids.push_back(forbidden[rng() % forbidden.size()]);
        }
        for (int32_t id : v.eos_ids()) budget_ids.push_back(id);
      }
      CheckStep(m, ref, after, budget_ids, where);
      if (::testing::Test::HasFatalFailure()) return steps;
      ++steps;

      // A forbidden token is refused and changes nothing.
      if (!forbidden.empty()) {
        const int32_t bad = forbidden[rng() % forbidden.size()];
        const int64_t before = m.MinBytesToComplete();
        EXPECT_FALSE(m.AcceptToken(bad).ok()) << where << ": accepted " << Show(v, bad);
        EXPECT_EQ(m.MinBytesToComplete(), before) << where;
        EXPECT_EQ(m.CanTerminate(), ref.CanEnd()) << where;
      }

      int32_t next = -1;
      if (step < options.random_steps && !allowed.empty()) {
        next = allowed[rng() % allowed.size()];
      } else {
        // Close: tokens that bring the end strictly nearer, then EOS.
        std::vector<int32_t> closer;
        for (int32_t id : allowed) {
          if (after[id] < ref.MinBytes()) closer.push_back(id);
        }
        if (!closer.empty() && !ref.CanEnd()) next = closer[rng() % closer.size()];
      }
      if (next < 0) {
        EXPECT_TRUE(ref.CanEnd()) << where;
        const int32_t eos = v.eos_ids().front();
        EXPECT_TRUE(m.AcceptToken(eos).ok()) << where;
        EXPECT_TRUE(m.IsTerminated()) << where;
        std::vector<uint32_t> mask(v.mask_words(), 0xFFFFFFFFu);
        m.FillNextTokenBitmask(mask);
        EXPECT_TRUE(std::all_of(mask.begin(), mask.end(), [](uint32_t w) { return w == 0; }))
            << where << ": nothing is allowed after EOS";
        EXPECT_FALSE(m.AcceptToken(eos).ok()) << where;
        break;
      }
      const absl::Status s = m.AcceptToken(next);
      EXPECT_TRUE(s.ok()) << where << ": " << s;
      if (!s.ok()) return steps;
      const std::string_view b = v.token_bytes(next);
      EXPECT_TRUE(ref.Advance(b)) << where;
      text.append(b);
    }
  }
  return steps;
}

}  // namespace expertmesh::grammar::testing
