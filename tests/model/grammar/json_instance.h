// Test-only: random JSON instances of a JSON schema (the corpus's subset), written from the JSON
// Schema rules rather than from the grammar, so that accepting them checks the grammar.
#ifndef EXPERTMESH_TESTS_MODEL_GRAMMAR_JSON_INSTANCE_H_
#define EXPERTMESH_TESTS_MODEL_GRAMMAR_JSON_INSTANCE_H_

#include <cstdint>
#include <random>
#include <string>

#include "nlohmann/json.hpp"

namespace expertmesh::grammar::testing {

class JsonInstanceGenerator {
 public:
  using Json = nlohmann::ordered_json;

  // `root` must outlive the generator.
  JsonInstanceGenerator(const Json& root, uint64_t seed) : root_(root), rng_(seed) {}

  // A random valid instance of the root schema. Strings with a `pattern` or `format` come from
  // sample tables (SamplesFor); an unknown one sets error().
  Json Generate();

  // True when the last instance holds an enum / const value that is a non-empty object or array
  // (the grammar admits those only in compact form, so its pretty-printed text is not expected).
  bool used_container_literal() const { return used_container_literal_; }
  const std::string& error() const { return error_; }

  // `schema` with every $ref resolved (the target for a ref, else the schema).
  const Json& Resolve(const Json& schema) const;

 private:
  Json Value(const Json& schema, int depth);
  Json Typed(const std::string& type, const Json& schema, int depth);
  Json AnyValue(int depth);
  std::string RandomString(int64_t min_length, int64_t max_length);
  int64_t Uniform(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }
  bool Coin() { return Uniform(0, 1) == 1; }

  const Json& root_;
  std::mt19937_64 rng_;
  bool used_container_literal_ = false;
  std::string error_;
};

}  // namespace expertmesh::grammar::testing

#endif  // EXPERTMESH_TESTS_MODEL_GRAMMAR_JSON_INSTANCE_H_
