#include "tests/model/grammar/engine/test_grammars.h"

#include <cstdlib>
#include <filesystem>
#include <utility>

namespace expertmesh::grammar::testing {
namespace {

Expr L(std::string s) { return Expr::Literal(std::move(s)); }
Expr R(std::string s) { return Expr::Ref(std::move(s)); }
Expr Seq(std::vector<Expr> items) { return Expr::Sequence(std::move(items)); }
Expr Alt(std::vector<Expr> items) { return Expr::Choice(std::move(items)); }
Expr Cls(std::vector<CodePointRange> r, bool negated = false) {
  return Expr::CharClass(std::move(r), negated);
}
Expr Star(Expr e) { return Expr::Repeat(std::move(e), 0, kUnbounded); }
Expr Plus(Expr e) { return Expr::Repeat(std::move(e), 1, kUnbounded); }
Expr Opt(Expr e) { return Expr::Repeat(std::move(e), 0, 1); }
Expr Rep(Expr e, int32_t lo, int32_t hi) { return Expr::Repeat(std::move(e), lo, hi); }
CodePointRange C(uint32_t c) { return {c, c}; }
CodePointRange C(uint32_t lo, uint32_t hi) { return {lo, hi}; }

Grammar Make(std::vector<std::pair<std::string, Expr>> rules) {
  Grammar g;
  for (auto& [name, body] : rules) g.rules.push_back({name, std::move(body)});
  return g;
}

}  // namespace

Grammar JsonGrammar() {
  Expr digit = Cls({C('0', '9')});
  return Make({
      {"root", R("object")},
      {"value", Alt({R("object"), R("array"), R("string"), R("number"),
                     Seq({Alt({L("true"), L("false"), L("null")}), R("ws")})})},
      {"object",
       Seq({L("{"), R("ws"),
            Opt(Seq({R("string"), L(":"), R("ws"), R("value"),
                     Star(Seq({L(","), R("ws"), R("string"), L(":"), R("ws"), R("value")}))})),
            L("}"), R("ws")})},
      {"array",
       Seq({L("["), R("ws"), Opt(Seq({R("value"), Star(Seq({L(","), R("ws"), R("value")}))})),
            L("]"), R("ws")})},
      {"string",
       Seq({L("\""),
            Star(Alt(
                {Cls({C('"'), C('\\'), C(0x7F), C(0, 0x1F)}, true),
                 Seq({L("\\"), Alt({Cls({C('"'), C('\\'), C('b'), C('f'), C('n'), C('r'), C('t')}),
                                    Seq({L("u"), Rep(Cls({C('0', '9'), C('a', 'f'), C('A', 'F')}),
                                                     4, 4)})})})})),
            L("\""), R("ws")})},
      {"number",
       Seq({Opt(L("-")), Alt({digit, Seq({Cls({C('1', '9')}), Rep(digit, 0, 15)})}),
            Opt(Seq({L("."), Plus(digit)})),
            Opt(Seq({Cls({C('e'), C('E')}), Opt(Cls({C('-'), C('+')})), digit, Rep(digit, 0, 15)})),
            R("ws")})},
      {"ws", Alt({Expr::Empty(), L(" "), Seq({L("\n"), Rep(Cls({C(' '), C('\t')}), 0, 20)})})},
  });
}

Grammar ArithmeticGrammar() {
  return Make({
      {"root", Seq({R("expr"), L("=")})},
      {"expr", Seq({R("term"), Star(Seq({Cls({C('+'), C('-')}), R("term")}))})},
      {"term", Seq({R("factor"), Star(Seq({L("*"), R("factor")}))})},
      {"factor", Alt({Plus(Cls({C('0', '9')})), Seq({L("("), R("expr"), L(")")}),
                      Seq({L("-"), R("factor")})})},
  });
}

Grammar RegexLikeGrammar() {
  return Make({
      {"root", Seq({Rep(Cls({C('a', 'z')}), 2, 4), Opt(Seq({L("-"), Plus(Cls({C('0', '9')}))})),
                    L("@"), Plus(Alt({L("ab"), L("abc"), L("b")})), L(".")})},
  });
}

Grammar TextThroughGrammar() {
  // t_k: k characters of "</t>" matched; every rule ends in a call of another (tail calls).
  return Make({
      {"root", Seq({L("A"), R("t0"), Star(Cls({C('a', 'z')})), L("!")})},
      {"t0", Alt({Seq({L("<"), R("t1")}), Seq({Cls({C('<')}, true), R("t0")})})},
      {"t1", Alt({Seq({L("/"), R("t2")}), Seq({L("<"), R("t1")}),
                  Seq({Cls({C('/'), C('<')}, true), R("t0")})})},
      {"t2", Alt({Seq({L("t"), R("t3")}), Seq({L("<"), R("t1")}),
                  Seq({Cls({C('t'), C('<')}, true), R("t0")})})},
      {"t3", Alt({L(">"), Seq({L("<"), R("t1")}), Seq({Cls({C('>'), C('<')}, true), R("t0")})})},
  });
}

Grammar Utf8Grammar() {
  return Make({
      {"root", Alt({Seq({Plus(Alt({Cls({C(0xE0, 0xFF)}), Cls({C(0x4E00, 0x9FA5)}),
                                   Cls({C(0x1F600, 0x1F64F)})})),
                         L(".")}),
                    Seq({Rep(Cls({C('a', 'z'), C('\n')}, true), 1, 3), L("!")})})},
  });
}

Grammar NoLowercaseGrammar() {
  return Make({{"root", Seq({Star(Cls({C('a', 'z')}, true)), L("x")})}});
}

Grammar NullableRecursionGrammar() {
  // root refers to itself (its follow set holds ")" and the end); "opt" may match nothing and
  // is called where a token can pop several levels at once.
  return Make({
      {"root", Alt({Seq({L("("), R("root"), L(")"), R("opt")}),
                    Seq({R("opt"), L("x"), R("opt"), Star(Seq({L(","), R("item")}))})})},
      {"item", Seq({R("opt"), Alt({L("a"), L("ab"), R("root")}), R("opt")})},
      {"opt", Opt(Seq({Cls({C('b', 'c')}), R("opt")}))},
  });
}

std::vector<NamedGrammar> AllTestGrammars() {
  return {{"json", JsonGrammar()},
          {"arithmetic", ArithmeticGrammar()},
          {"regex_like", RegexLikeGrammar()},
          {"text_through", TextThroughGrammar()},
          {"utf8", Utf8Grammar()},
          {"no_lowercase", NoLowercaseGrammar()},
          {"nullable_recursion", NullableRecursionGrammar()}};
}

SmallVocab MakeSmallVocab() {
  std::vector<std::string> bytes;
  for (int b = 0; b < 256; ++b) bytes.push_back(std::string(1, static_cast<char>(b)));
  for (const char* t : {"{",
                        "{\"",
                        "\":",
                        "\",",
                        "\"}",
                        "\": ",
                        ", \"",
                        "true",
                        "tr",
                        "ue",
                        "false",
                        "null",
                        "nu",
                        "ll",
                        "12",
                        "3.",
                        ".5",
                        "e+",
                        "-1",
                        "\n",
                        "\n ",
                        "\n\t\t",
                        "  ",
                        " \"",
                        "ab",
                        "abc",
                        "cd",
                        "a-",
                        "-0",
                        "@a",
                        "@ab",
                        "b.",
                        "bab",
                        "(1",
                        "+(",
                        "))",
                        "*(",
                        ")=",
                        "()",
                        "[]",
                        "([",
                        "])",
                        "[{",
                        "}]",
                        "</",
                        "</t",
                        "t>",
                        "</t>",
                        "x<",
                        "<<",
                        "/t",
                        ">a",
                        ">ab!",
                        "é",
                        "à",
                        "ÿ",
                        "éà",
                        "中",
                        "中文",
                        "\xe4\xb8",
                        "\xad\xe6",
                        "\xe6\x96\x87.",
                        "😀",
                        "\xf0\x9f",
                        "\x98\x80.",
                        "é.",
                        "ab!",
                        "\\u00",
                        "\\u00e9\"",
                        "\\n",
                        "\\\"",
                        "\"\\",
                        "e\"",
                        "a\":",
                        "[1",
                        ",2]",
                        "\"a\"",
                        "{}",
                        "{\"a\": [1, 2], \"b\": null}",
                        "!!",
                        "?!",
                        "é!",
                        "true}",
                        "1,",
                        "1}",
                        "\"}}",
                        "\"]}"}) {
    bytes.push_back(t);
  }
  // A duplicate spelling (an added token repeating a vocabulary entry).
  bytes.push_back("ab");
  SmallVocab v;
  std::vector<bool> special(bytes.size(), false);
  v.eos = static_cast<int32_t>(bytes.size());
  bytes.push_back("<|eos|>");
  special.push_back(true);
  v.special = static_cast<int32_t>(bytes.size());
  bytes.push_back("<|tool|>");
  special.push_back(true);
  v.empty = static_cast<int32_t>(bytes.size());
  bytes.push_back("");
  special.push_back(false);
  v.padding = static_cast<int32_t>(bytes.size());
  const int32_t vocab_size = v.padding + 7;
  v.vocab = *TokenVocabulary::Create(std::move(bytes), std::move(special), {v.eos}, vocab_size);
  return v;
}

std::string Qwen2TokenizerDir() {
  std::string root = std::string(EXPERTMESH_BINARY_DIR) + "/test-data/tokenizers";
  if (const char* env = std::getenv("EXPERTMESH_TOKENIZER_DIR")) root = env;
  const std::string dir = root + "/qwen2";
  return std::filesystem::exists(dir + "/tokenizer.json") ? dir : std::string();
}

}  // namespace expertmesh::grammar::testing
