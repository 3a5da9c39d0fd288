#include "tests/router/grammar_test_util.h"

#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "model/grammar/engine/compiled_grammar.h"
#include "model/grammar/engine/grammar_matcher.h"
#include "model/grammar/engine/token_vocabulary.h"
#include "model/grammar/gbnf.h"

namespace expertmesh::router::testing {
namespace {

constexpr int32_t kEos = 256;

std::shared_ptr<const grammar::TokenVocabulary> ByteVocabulary() {
  static const std::shared_ptr<const grammar::TokenVocabulary> vocab = [] {
    std::vector<std::string> bytes;
    for (int b = 0; b < 256; ++b) bytes.emplace_back(1, static_cast<char>(b));
    bytes.emplace_back("");  // EOS
    std::vector<bool> special(257, false);
    special[kEos] = true;
    absl::StatusOr<std::shared_ptr<const grammar::TokenVocabulary>> v =
        grammar::TokenVocabulary::Create(std::move(bytes), std::move(special), {kEos}, 257);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : nullptr;
  }();
  return vocab;
}

}  // namespace

bool GrammarAccepts(const std::string& gbnf, std::string_view text) {
  absl::StatusOr<grammar::Grammar> g = grammar::ParseGbnf(gbnf);
  EXPECT_TRUE(g.ok()) << g.status() << "\n" << gbnf;
  if (!g.ok()) return false;
  absl::StatusOr<std::shared_ptr<const grammar::CompiledGrammar>> compiled =
      grammar::CompiledGrammar::Compile(*g, ByteVocabulary());
  EXPECT_TRUE(compiled.ok()) << compiled.status() << "\n" << gbnf;
  if (!compiled.ok()) return false;
  grammar::GrammarMatcher matcher(*compiled);
  for (char c : text) {
    if (!matcher.AcceptToken(static_cast<uint8_t>(c)).ok()) return false;
  }
  return matcher.CanTerminate() && matcher.AcceptToken(kEos).ok();
}

}  // namespace expertmesh::router::testing
