// Test-only: random sentences of a grammar (a random derivation from the root), so tests can
// check that everything a grammar admits is what its front end promised (e.g. valid JSON).
#ifndef EXPERTMESH_TESTS_MODEL_GRAMMAR_SAMPLER_H_
#define EXPERTMESH_TESTS_MODEL_GRAMMAR_SAMPLER_H_

#include <cstdint>
#include <map>
#include <random>
#include <string>

#include "model/grammar/ast.h"

namespace expertmesh::grammar::testing {

class GrammarSampler {
 public:
  // REQUIRES: every rule of `g` can complete (a finite derivation exists); `g` outlives this.
  GrammarSampler(const Grammar& g, uint64_t seed);

  // A random sentence. Below `max_depth` rule references, choices and repetitions are uniform
  // (repetitions up to 3 past their minimum); deeper, the shortest completion is taken.
  std::string Sample(int max_depth = 12);

 private:
  void Append(const Expr& e, int depth, std::string& out);
  // The fewest bytes a derivation of `e` takes (a fixpoint over the rules, computed once).
  int64_t MinBytes(const Expr& e) const;
  uint32_t RandomCodePoint(const Expr& cls);
  int64_t Uniform(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }

  std::map<std::string, const Expr*> rules_;
  std::map<std::string, int64_t> min_bytes_;
  std::string root_;
  int max_depth_ = 12;
  std::mt19937_64 rng_;
};

}  // namespace expertmesh::grammar::testing

#endif  // EXPERTMESH_TESTS_MODEL_GRAMMAR_SAMPLER_H_
