#include "model/grammar/json_schema.h"

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/grammar/gbnf.h"
#include "tests/model/grammar/recognizer.h"

namespace expertmesh::grammar {
namespace {

using ::testing::HasSubstr;
using testing::Recognize;

Grammar Convert(const std::string& schema, const JsonGrammarOptions& options = {}) {
  absl::StatusOr<Grammar> g = JsonSchemaToGrammar(schema, options);
  EXPECT_TRUE(g.ok()) << g.status() << "\n" << schema;
  return g.ok() ? *g : Grammar{};
}

TEST(JsonSchemaTest, PrintsStableReadableRules) {
  const std::string schema = R"({
    "$defs": {"Point": {"type": "object", "properties": {"x": {"type": "integer", "minimum": 0,
      "maximum": 9}}, "required": ["x"]}},
    "type": "object",
    "properties": {"p": {"$ref": "#/$defs/Point"}, "tags": {"type": "array",
      "items": {"type": "string"}, "maxItems": 2}},
    "required": ["p", "tags"]})";
  const std::string gbnf = PrintGbnf(Convert(schema));
  EXPECT_EQ(gbnf, R"gbnf(root ::= "{" ws "\"p\":" ws Point "," ws "\"tags\":" ws root-tags ws "}"
ws ::= (" " | "\n" [\t ]{0,20})?
Point ::= "{" ws "\"x\":" ws [0-9] ws "}"
root-tags ::= "[" ws (string ("," ws string)? ws)? "]"
string ::= "\"" char* "\""
char ::= [^\x00-\x1F"\x5C] | "\\" (["/\x5Cbfnrt] | "u" ([0-9A-CE-Fa-ce-f] [0-9A-Fa-f]{3} | [Dd] [0-7] [0-9A-Fa-f]{2} | [Dd] [8-9A-Ba-b] [0-9A-Fa-f]{2} "\\u" [Dd] [C-Fc-f] [0-9A-Fa-f]{2}))
)gbnf");
  // The worker caches compiled grammars by this text: the same schema prints the same text.
  EXPECT_EQ(PrintGbnf(Convert(schema)), gbnf);
}

TEST(JsonSchemaTest, IntegerRangesAreExact) {
  const std::vector<std::pair<int64_t, int64_t>> ranges = {
      {0, 0}, {0, 9},     {1, 65535}, {-1000, 1000}, {-3, 17},    {13, 120},   {-99, -10},
      {7, 7}, {100, 999}, {-1, 0},    {99, 1000},    {-128, 127}, {1234, 5678}};
  for (const auto& [lo, hi] : ranges) {
    const Grammar g =
        Convert(absl::StrCat(R"({"type":"integer","minimum":)", lo, R"(,"maximum":)", hi, "}"));
    for (int64_t v = lo - 150; v <= hi + 150; ++v) {
      ASSERT_EQ(Recognize(g, std::to_string(v)), v >= lo && v <= hi)
          << v << " in [" << lo << ", " << hi << "]\n"
          << PrintGbnf(g);
    }
    EXPECT_FALSE(Recognize(g, "-0"));
    EXPECT_FALSE(Recognize(g, absl::StrCat("0", lo)));
    EXPECT_FALSE(Recognize(g, absl::StrCat(lo, ".0")));
  }
  // One-sided and exclusive bounds (exclusive float bounds round inward).
  const Grammar year = Convert(R"({"type":"integer","minimum":1900})");
  EXPECT_TRUE(Recognize(year, "1900"));
  EXPECT_TRUE(Recognize(year, "123456789012"));
  EXPECT_FALSE(Recognize(year, "1899"));
  EXPECT_FALSE(Recognize(year, "-5000"));
  const Grammar below = Convert(R"({"type":"integer","exclusiveMaximum":-9.5})");
  EXPECT_TRUE(Recognize(below, "-10"));
  EXPECT_TRUE(Recognize(below, "-99999999"));
  EXPECT_FALSE(Recognize(below, "-9"));
  EXPECT_FALSE(Recognize(below, "0"));
  const Grammar draft4 = Convert(R"({"type":"integer","minimum":0,"exclusiveMinimum":true})");
  EXPECT_FALSE(Recognize(draft4, "0"));
  EXPECT_TRUE(Recognize(draft4, "1"));
  const Grammar int32 = Convert(R"({"type":"integer","format":"int32"})");
  EXPECT_TRUE(Recognize(int32, "2147483647"));
  EXPECT_TRUE(Recognize(int32, "-2147483648"));
  EXPECT_FALSE(Recognize(int32, "2147483648"));
  const Grammar int64 = Convert(R"({"type":"integer","format":"int64"})");
  EXPECT_TRUE(Recognize(int64, "-9223372036854775808"));
  EXPECT_FALSE(Recognize(int64, "9223372036854775808"));
}

// Plain decimal strings (no exponent) against integer and decimal bounds, exactly. The expected
// answers compare doubles, which is exact here: every candidate and bound is a short decimal, and
// distinct short decimals are distinct doubles.
TEST(JsonSchemaTest, NumberRangesAreExact) {
  const struct {
    const char* bounds;
    double lo;
    bool lo_open;
    double hi;
    bool hi_open;
  } cases[] = {
      {R"("minimum":0,"maximum":1)", 0, false, 1, false},
      {R"("minimum":-40,"maximum":60)", -40, false, 60, false},
      {R"("exclusiveMinimum":0)", 0, true, 1e300, false},
      {R"("exclusiveMaximum":0)", -1e300, false, 0, true},
      {R"("exclusiveMinimum":-2,"exclusiveMaximum":3)", -2, true, 3, true},
      {R"("minimum":5,"maximum":5)", 5, false, 5, false},
      {R"("minimum":-7,"exclusiveMaximum":-3)", -7, false, -3, true},
      {R"("minimum":0.95,"maximum":2.5)", 0.95, false, 2.5, false},
      {R"("exclusiveMinimum":-1.25,"exclusiveMaximum":0.05)", -1.25, true, 0.05, true},
      {R"("minimum":-0.5,"maximum":-0.25)", -0.5, false, -0.25, false},
      {R"("minimum":1e-2)", 0.01, false, 1e300, false},
      {R"("exclusiveMinimum":0.999,"maximum":1)", 0.999, true, 1, false},
      {R"("minimum":2.5,"maximum":2.5)", 2.5, false, 2.5, false},
      {R"("minimum":0.25,"exclusiveMaximum":0.251)", 0.25, false, 0.251, true},
      {R"("exclusiveMinimum":0.05,"exclusiveMaximum":0.1)", 0.05, true, 0.1, true},
      {R"("minimum":-10.5,"maximum":12.75,"exclusiveMaximum":12.5)", -10.5, false, 12.5, true},
  };
  std::vector<std::string> candidates;
  for (int i = -45; i <= 65; ++i) {
    for (const char* fraction :
         {"",    ".0", ".000", ".5",   ".001", ".999",  ".10", ".95",  ".949",  ".951", ".9500",
          ".25", ".2", ".05",  ".050", ".049", ".0999", ".1",  ".251", ".2509", ".75"}) {
      candidates.push_back(absl::StrCat(i, fraction));
      if (i == 0) candidates.push_back(absl::StrCat("-0", fraction));
    }
  }
  for (const auto& c : cases) {
    const Grammar g = Convert(absl::StrCat(R"({"type":"number",)", c.bounds, "}"));
    for (const std::string& s : candidates) {
      const double v = std::stod(s);
      const bool want = (c.lo_open ? v > c.lo : v >= c.lo) && (c.hi_open ? v < c.hi : v <= c.hi);
      // "-0" spellings are never generated (0 has the spelling "0").
      if (s.starts_with("-0") && want && v == 0) continue;
      ASSERT_EQ(Recognize(g, s), want) << s << " with " << c.bounds << "\n" << PrintGbnf(g);
    }
    EXPECT_FALSE(Recognize(g, "1e1"));
    EXPECT_FALSE(Recognize(g, "01"));
    EXPECT_FALSE(Recognize(g, "1."));
  }
  absl::StatusOr<Grammar> empty =
      JsonSchemaToGrammar(R"({"type":"number","minimum":0.1,"exclusiveMaximum":0.1})");
  ASSERT_FALSE(empty.ok());
  EXPECT_THAT(std::string(empty.status().message()), HasSubstr("no number"));
  const Grammar any = Convert(R"({"type":"number"})");
  for (const char* s : {"0", "-0", "1.5", "-12.25e+10", "3E-7", "1e5"}) {
    EXPECT_TRUE(Recognize(any, s)) << s;
  }
  for (const char* s : {"01", "1.", ".5", "+1", "1e", "--1", "NaN"}) {
    EXPECT_FALSE(Recognize(any, s)) << s;
  }
}

TEST(JsonSchemaTest, WhitespaceIsBounded) {
  const std::string schema =
      R"({"type":"object","properties":{"a":{"type":"array","items":{"type":"integer"}}},
          "required":["a"]})";
  const Grammar g = Convert(schema);
  for (const char* s : {"{\"a\":[1,2]}", "{\"a\": [1, 2]}", "{ \"a\": [ 1, 2 ] }",
                        "{\n  \"a\": [\n    1,\n    2\n  ]\n}", "{\n\t\"a\": []\n}"}) {
    EXPECT_TRUE(Recognize(g, s)) << s;
  }
  for (const char* s :
       {"{  \"a\":[]}", "{\"a\" :[]}", "{\"a\":[1 ,2]}", "{\"a\":[]} ", "{\n\n\"a\":[]}"}) {
    EXPECT_FALSE(Recognize(g, s)) << s;
  }
  EXPECT_TRUE(Recognize(g, "{\n" + std::string(20, ' ') + "\"a\":[]}"));
  EXPECT_FALSE(Recognize(g, "{\n" + std::string(21, ' ') + "\"a\":[]}"));
  JsonGrammarOptions compact;
  compact.allow_whitespace = false;
  const Grammar c = Convert(schema, compact);
  EXPECT_TRUE(Recognize(c, "{\"a\":[1,2]}"));
  EXPECT_FALSE(Recognize(c, "{\"a\": [1,2]}"));
  JsonGrammarOptions indent4;
  indent4.max_indent = 4;
  EXPECT_FALSE(Recognize(Convert(schema, indent4), "{\n     \"a\":[]}"));
  JsonGrammarOptions negative;
  negative.max_indent = -5;  // as 0, never unbounded
  EXPECT_TRUE(Recognize(Convert(schema, negative), "{\n\"a\":[]}"));
  EXPECT_FALSE(Recognize(Convert(schema, negative), "{\n \"a\":[]}"));
}

TEST(JsonSchemaTest, OptionalPropertiesKeepTheirOrder) {
  const Grammar g = Convert(R"({"type":"object","properties":{"a":{"type":"integer"},
      "b":{"type":"integer"},"c":{"type":"integer"}},"required":["b"]})");
  for (const char* s :
       {R"({"b":2})", R"({"a":1,"b":2})", R"({"b":2,"c":3})", R"({"a":1,"b":2,"c":3})"}) {
    EXPECT_TRUE(Recognize(g, s)) << s;
  }
  for (const char* s : {R"({})", R"({"a":1})", R"({"b":2,"a":1})", R"({"a":1,"c":3})",
                        R"({"b":2,})", R"({,"b":2})", R"({"b":2,"d":4})"}) {
    EXPECT_FALSE(Recognize(g, s)) << s;
  }
  const Grammar all_optional = Convert(R"({"properties":{"x":{"type":"integer"},
      "y":{"type":"integer"}}})");
  for (const char* s : {"{}", R"({"x":1})", R"({"y":2})", R"({"x":1,"y":2})"}) {
    EXPECT_TRUE(Recognize(all_optional, s)) << s;
  }
  EXPECT_FALSE(Recognize(all_optional, R"({"y":2,"x":1})"));
}

// Many optional members: the grammar stays linear in their number (tail rules) and exact.
TEST(JsonSchemaTest, ManyOptionalPropertiesStayLinear) {
  for (const bool extras : {false, true}) {
    std::string schema = R"({"type":"object","properties":{)";
    for (int i = 0; i < 40; ++i)
      absl::StrAppend(&schema, i ? "," : "", "\"p", i, "\":{\"type\":\"integer\"}");
    absl::StrAppend(&schema, R"(},"required":["p7","p30"],"additionalProperties":)",
                    extras ? "true" : "false", "}");
    const Grammar g = Convert(schema);
    EXPECT_LT(PrintGbnf(g).size(), 8000u) << PrintGbnf(g);
    std::mt19937 rng(extras ? 1 : 2);
    for (int trial = 0; trial < 300; ++trial) {
      std::string text = "{";
      bool has7 = false;
      bool has30 = false;
      bool first = true;
      for (int i = 0; i < 40; ++i) {
        if (rng() % 3 != 0 && i != 7 && i != 30) continue;
        if ((i == 7 || i == 30) && rng() % 8 == 0) continue;  // sometimes leave a required one out
        has7 |= i == 7;
        has30 |= i == 30;
        absl::StrAppend(&text, first ? "" : ",", "\"p", i, "\":", i);
        first = false;
      }
      if (extras && rng() % 2 == 0) absl::StrAppend(&text, first ? "" : ",", R"("zz":[])");
      text += "}";
      ASSERT_EQ(Recognize(g, text), has7 && has30) << text;
    }
    EXPECT_FALSE(Recognize(g, R"({"p30":1,"p7":1})"));
  }
}

TEST(JsonSchemaTest, AdditionalProperties) {
  const std::string declared = R"("type":"object","properties":{"id":{"type":"string"}},
      "required":["id"])";
  const Grammar strict = Convert("{" + declared + "}");
  EXPECT_TRUE(Recognize(strict, R"({"id":"x"})"));
  EXPECT_FALSE(Recognize(strict, R"({"id":"x","more":1})"));
  JsonGrammarOptions spec_default;
  spec_default.strict_additional_properties = false;
  const Grammar open = Convert("{" + declared + "}", spec_default);
  EXPECT_TRUE(Recognize(open, R"({"id":"x","more":[1,{"k":null}],"z":"w"})"));
  EXPECT_FALSE(Recognize(open, R"({"more":1,"id":"x"})"));  // extras after the declared ones
  const Grammar numbers = Convert(R"({"type":"object","additionalProperties":{"type":"number"}})");
  EXPECT_TRUE(Recognize(numbers, "{}"));
  EXPECT_TRUE(Recognize(numbers, R"({"a":1.5,"b":-2})"));
  EXPECT_FALSE(Recognize(numbers, R"({"a":"x"})"));
}

TEST(JsonSchemaTest, StringsCountCharactersAndEscapes) {
  const Grammar g = Convert(R"({"type":"string","minLength":2,"maxLength":3})");
  for (const char* s : {R"("ab")", R"("a\"c")", R"("é中😀")", R"("\u00e9\n")", R"("\/\\")",
                        R"("\ud83d\ude00\uD83D\uDE00")"}) {  // a surrogate pair is one character
    EXPECT_TRUE(Recognize(g, s)) << s;
  }
  for (const char* s : {R"("a")", R"("abcd")", "\"a\nb\"", R"("a\qb")", R"("a"b")", R"("\u00g1a")",
                        R"("\ud800a")", R"("a\udc00")", R"("\ud83d\u0041")"}) {
    EXPECT_FALSE(Recognize(g, s)) << s;
  }
  const Grammar formats = Convert(R"({"type":"array","prefixItems":[
      {"format":"date"},{"format":"date-time"},{"format":"uuid"},{"format":"email"},
      {"format":"time"},{"format":"ipv4"},{"format":"hostname"}],"items":false,"minItems":7})");
  EXPECT_TRUE(Recognize(formats, R"(["2024-02-29","2000-02-29T23:59:59.25+01:00",)"
                                 R"("123e4567-e89b-12d3-a456-426614174000","a.b+c@d.example",)"
                                 R"("00:00:00Z","10.0.0.255","my-host.local"])"));
  const Grammar date = Convert(R"({"format":"date"})");
  for (const char* s : {"2024-02-29", "2000-02-29", "0000-02-29", "1996-02-29", "2023-12-31",
                        "2023-04-30", "2023-02-28"}) {
    EXPECT_TRUE(Recognize(date, absl::StrCat("\"", s, "\""))) << s;
  }
  for (const char* s : {"2023-02-29", "1900-02-29", "2100-02-29", "2023-04-31", "2023-13-01",
                        "2023-00-10", "2023-01-00", "2023-01-32", "23-01-01"}) {
    EXPECT_FALSE(Recognize(date, absl::StrCat("\"", s, "\""))) << s;
  }
  // Every day of a few years, against the Gregorian calendar.
  for (int year : {0, 1, 400, 1900, 1996, 2000, 2023, 2024, 2100, 9996}) {
    const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    for (int month = 0; month <= 13; ++month) {
      const int days = month == 2
                           ? (leap ? 29 : 28)
                           : (month == 4 || month == 6 || month == 9 || month == 11 ? 30 : 31);
      for (int day = 0; day <= 32; ++day) {
        const bool valid = month >= 1 && month <= 12 && day >= 1 && day <= days;
        const std::string text = absl::StrFormat("\"%04d-%02d-%02d\"", year, month, day);
        ASSERT_EQ(Recognize(date, text), valid) << text;
      }
    }
  }
  const Grammar time = Convert(R"({"format":"time"})");
  for (const char* s : {"24:00:00Z", "23:60:00Z", "23:59:60Z", "12:00:00", "12:00:00+1:00"}) {
    EXPECT_FALSE(Recognize(time, absl::StrCat("\"", s, "\""))) << s;
  }
}

TEST(JsonSchemaTest, PatternsAreUnanchoredUnlessAnchored) {
  const Grammar g = Convert(R"({"type":"array","prefixItems":[{"pattern":"^ab"},
      {"pattern":"cd$"},{"pattern":"x\"y"},{"pattern":"^[^a]$"}],"items":false,"minItems":4})");
  EXPECT_TRUE(Recognize(g, R"(["abzz","zzcd","--x\"y--","\n"])"));
  EXPECT_TRUE(Recognize(g, R"(["ab","cd","x\"y","\\"])"));
  EXPECT_FALSE(Recognize(g, R"(["zab","cd","x\"y","b"])"));
  EXPECT_FALSE(Recognize(g, R"(["ab","cdz","x\"y","b"])"));
  EXPECT_FALSE(Recognize(g, R"(["ab","cd","x\"y","a"])"));
  EXPECT_FALSE(Recognize(g, "[\"ab\",\"cd\",\"x\\\"y\",\"\n\"]"));  // raw control character
}

TEST(JsonSchemaTest, LengthLimitsThePatternOrFormatImpliesAreAccepted) {
  const Grammar sku = Convert(R"({"type":"string","pattern":"^[A-Z]{3}-\\d{4}$","minLength":8,
      "maxLength":8})");
  EXPECT_TRUE(Recognize(sku, R"("ABC-1234")"));
  EXPECT_FALSE(Recognize(sku, R"("ABC-123")"));
  const Grammar word = Convert(R"({"type":"string","pattern":"^(ab|c)+$","minLength":1})");
  EXPECT_TRUE(Recognize(word, R"("abcab")"));
  EXPECT_FALSE(Recognize(word, R"("")"));
  const Grammar uuid = Convert(R"({"type":"string","format":"uuid","minLength":36,
      "maxLength":36})");
  EXPECT_TRUE(Recognize(uuid, R"("123e4567-e89b-12d3-a456-426614174000")"));
}

TEST(JsonSchemaTest, EnumAndConstAreCanonicalJson) {
  const Grammar g = Convert(R"({"enum":["a\"b",1,2.5,true,null,{"k":[1,"é"]},[]]})");
  for (const char* s : {R"("a\"b")", "1", "2.5", "true", "null", R"({"k":[1,"é"]})", "[]"}) {
    EXPECT_TRUE(Recognize(g, s)) << s;
  }
  for (const char* s : {R"("a\u0022b")", "1.0", "false", R"({"k": [1,"é"]})"}) {
    EXPECT_FALSE(Recognize(g, s)) << s;
  }
  // Only the values of the schema's type.
  const Grammar typed = Convert(R"({"type":["integer","null"],"enum":[1,2.0,2.5,"3",null]})");
  for (const char* s : {"1", "2.0", "null"}) EXPECT_TRUE(Recognize(typed, s)) << s;
  for (const char* s : {"2.5", R"("3")"}) EXPECT_FALSE(Recognize(typed, s)) << s;
}

TEST(JsonSchemaTest, RecursiveReferencesAreOneRuleEach) {
  const Grammar g = Convert(R"({"$ref":"#/$defs/Node","$defs":{"Node":{"type":"object",
      "properties":{"v":{"type":"integer"},"next":{"anyOf":[{"$ref":"#/$defs/Node"},
      {"type":"null"}]}},"required":["v","next"]}}})");
  EXPECT_TRUE(Recognize(g, R"({"v":1,"next":{"v":2,"next":{"v":3,"next":null}}})"));
  EXPECT_FALSE(Recognize(g, R"({"v":1,"next":{"v":2}})"));
  int node_rules = 0;
  for (const Rule& r : g.rules) node_rules += r.name.starts_with("Node") ? 1 : 0;
  EXPECT_EQ(node_rules, 2);  // Node, and its anyOf property Node-next
  const Grammar encoded = Convert(R"({"$defs":{"My Model":{"type":"integer"},"a/b":{"const":1}},
      "type":"array","prefixItems":[{"$ref":"#/$defs/My%20Model"},{"$ref":"#/$defs/a~1b"}],
      "items":false})");
  EXPECT_TRUE(Recognize(encoded, "[5,1]"));
  EXPECT_FALSE(Recognize(encoded, "[5,2]"));
  const Grammar tree = Convert(R"({"type":"object","properties":{"kids":{"type":"array",
      "items":{"$ref":"#"}}},"required":["kids"]})");
  EXPECT_TRUE(Recognize(tree, R"({"kids":[{"kids":[]},{"kids":[{"kids":[]}]}]})"));
}

TEST(JsonSchemaTest, ArraysWithPrefixItemsAndCounts) {
  const Grammar g = Convert(R"({"type":"array","prefixItems":[{"type":"string"},
      {"type":"integer"}],"items":{"type":"boolean"},"minItems":1,"maxItems":3})");
  for (const char* s : {R"(["a"])", R"(["a",1])", R"(["a",1,true])"}) {
    EXPECT_TRUE(Recognize(g, s)) << s;
  }
  for (const char* s : {"[]", R"([1])", R"(["a",1,true,false])", R"(["a",true])"}) {
    EXPECT_FALSE(Recognize(g, s)) << s;
  }
  const Grammar counted = Convert(R"({"type":"array","items":{"type":"null"},"minItems":2,
      "maxItems":4})");
  for (int n = 0; n <= 6; ++n) {
    std::string s = "[";
    for (int i = 0; i < n; ++i) s += i ? ",null" : "null";
    EXPECT_EQ(Recognize(counted, s + "]"), n >= 2 && n <= 4) << s;
  }
}

TEST(JsonSchemaTest, ErrorsNameTheKeywordAndWhereItIs) {
  const struct {
    const char* schema;
    std::vector<const char*> parts;
  } cases[] = {
      {R"({"properties":{"a":{"not":{}}}})", {"#/properties/a", "'not'"}},
      {R"({"type":"array","items":{"type":"string","format":"uri"}})", {"#/items", "uri"}},
      {R"({"$defs":{"A":{"type":"integer","multipleOf":2}},"$ref":"#/$defs/A"})",
       {"#/$defs/A", "multipleOf"}},
      {R"({"anyOf":[{"type":"string"},{"type":"number","minimum":"0.5"}]})",
       {"#/anyOf/1", "'minimum' must be a number"}},
      {R"j({"type":"string","pattern":"(?=x)"})j", {"lookahead"}},
      {R"({"type":"object","required":["a"]})", {"required property 'a'"}},
      {R"({"type":"string","minLength":3,"pattern":"a"})", {"'pattern'", "1 to any"}},
      {R"({"type":"string","maxLength":5,"pattern":"^[a-z]{2,6}$"})", {"2 to 6 characters"}},
      {R"({"type":"string","minLength":37,"format":"uuid"})", {"'format'"}},
      {R"({"type":"string","pattern":"^a$","format":"date"})", {"'pattern' together"}},
      {R"({"type":["string",5]})", {"type"}},
      {R"({"enum":[]})", {"enum"}},
      {R"({"type":"string","enum":[1,2]})", {"'enum' holds no value of the type"}},
      {R"({"type":"integer","const":"1"})", {"'const' holds a value of another type"}},
      {R"({"$ref":"#/$defs/A","type":"object","$defs":{"A":{}}})", {"'type' next to '$ref'"}},
      {R"({"type":"object","anyOf":[{"required":["a"]},{"required":["b"]}]})",
       {"'type' next to 'anyOf'"}},
      {R"({"type":"integer","minimum":"3"})", {"'minimum' must be a number"}},
      {R"({"type":"integer","maximum":1e30})", {"'maximum' is outside the 64-bit range"}},
      {R"({"type":"integer","exclusiveMaximum":-9223372036854775808})", {"no 64-bit integer"}},
      {R"({"type":"string","maxLength":2000000})", {"'maxLength' 2000000 is above"}},
      {R"({"$ref":"#/definitions/x"})", {"points at nothing"}},
      {R"({"$ref":"#/$defs/l/99999999999999999999999","$defs":{"l":[{}]}})", {"points at nothing"}},
      {R"({"type":"object","properties":{"a":false},"required":["a"]})", {"schema false"}},
      {"[1]", {"object or a boolean"}},
      {R"({"type":"number","minimum":3,"exclusiveMaximum":3})", {"no number"}},
      {R"({"type":"integer","minimum":2.5,"maximum":2.9})", {"leave no integer"}},
      {R"({"type":"array","prefixItems":[{}],"items":false,"minItems":2})", {"minItems 2"}},
  };
  for (const auto& c : cases) {
    absl::StatusOr<Grammar> g = JsonSchemaToGrammar(c.schema);
    ASSERT_FALSE(g.ok()) << c.schema;
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
    for (const char* part : c.parts) {
      EXPECT_THAT(std::string(g.status().message()), HasSubstr(part)) << c.schema;
    }
  }
}

TEST(JsonSchemaTest, AnnotationsAreIgnored) {
  const Grammar plain = Convert(R"({"type":"object","properties":{"a":{"type":"integer"}},
      "required":["a"]})");
  const Grammar annotated = Convert(R"({"$schema":"https://json-schema.org/draft/2020-12/schema",
      "title":"T","description":"d","type":"object","properties":{"a":{"type":"integer",
      "default":1,"examples":[2],"deprecated":true,"readOnly":true,"$comment":"c"}},
      "required":["a"],"x-vendor":{"not":1}})");
  EXPECT_EQ(PrintGbnf(annotated), PrintGbnf(plain));
  // Next to $ref and anyOf too, as Pydantic writes them (and json_schema_extra keys).
  const Grammar beside = Convert(R"({"$defs":{"A":{"type":"integer"}},"type":"object",
      "properties":{"a":{"$ref":"#/$defs/A","description":"d","default":1,"ui:order":2},
      "b":{"anyOf":[{"type":"string"},{"type":"null"}],"title":"B","default":null}},
      "required":["a","b"]})");
  EXPECT_TRUE(Recognize(beside, R"({"a":1,"b":null})"));
  EXPECT_TRUE(Recognize(beside, R"({"a":-2,"b":"x"})"));
  EXPECT_FALSE(Recognize(beside, R"({"a":"1","b":null})"));
}

TEST(JsonSchemaTest, DeepNestingIsRefusedNotACrash) {
  const auto nested = [](int depth) {
    std::string s;
    for (int i = 0; i < depth; ++i) s += R"({"type":"array","items":)";
    s += R"({"type":"null"})";
    for (int i = 0; i < depth; ++i) s += "}";
    return s;
  };
  EXPECT_TRUE(JsonSchemaToGrammar(nested(100)).ok());
  absl::StatusOr<Grammar> deep = JsonSchemaToGrammar(nested(5000));
  ASSERT_FALSE(deep.ok());
  EXPECT_THAT(std::string(deep.status().message()), HasSubstr("nested too deeply"));
  // A malformed nullable is an error of the schema, not an exception.
  EXPECT_TRUE(JsonSchemaToGrammar(R"({"type":"string","nullable":"yes"})").ok());
}

TEST(JsonObjectGrammarTest, AnyObjectOnly) {
  const Grammar g = JsonObjectGrammar();
  for (const char* s : {"{}", R"({"a":[1,{"b":null}],"c":"d","e":-1.5e3,"f":true})",
                        "{\n  \"a\": {\n    \"b\": []\n  }\n}"}) {
    EXPECT_TRUE(Recognize(g, s)) << s;
  }
  for (const char* s : {"[]", "\"x\"", "1", "{\"a\"}", "{\"a\":1,}", "{'a':1}", "{\"a\":01}"}) {
    EXPECT_FALSE(Recognize(g, s)) << s;
  }
  absl::StatusOr<Grammar> back = ParseGbnf(PrintGbnf(g));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, g);
}

}  // namespace
}  // namespace expertmesh::grammar
