// Runs GBNF text the router produced through the grammar engine as a worker would, over a
// byte-level vocabulary (one token per byte, so any text can be fed), to ask whether a text is
// a complete sentence of it.
#ifndef EXPERTMESH_TESTS_ROUTER_GRAMMAR_TEST_UTIL_H_
#define EXPERTMESH_TESTS_ROUTER_GRAMMAR_TEST_UTIL_H_

#include <string>
#include <string_view>

namespace expertmesh::router::testing {

// Whether `text` is a whole sentence of the grammar `gbnf` (which must parse and compile: a
// test failure otherwise, and false).
bool GrammarAccepts(const std::string& gbnf, std::string_view text);

}  // namespace expertmesh::router::testing

#endif  // EXPERTMESH_TESTS_ROUTER_GRAMMAR_TEST_UTIL_H_
