// JSON schema -> grammar: objects, arrays, and the shared rules (whitespace, strings, numbers, any
// value) that json_schema.cc's dispatch refers to.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "model/grammar/expr_util.h"
#include "model/grammar/json_converter.h"

namespace expertmesh::grammar {
namespace {

Expr Digits() { return Range('0', '9'); }

}  // namespace

Expr JsonSchemaConverter::Ws() {
  if (!options_.allow_whitespace) return Expr::Empty();
  return Helper("ws");
}

Expr JsonSchemaConverter::Helper(std::string_view key) {
  if (auto it = helpers_.find(key); it != helpers_.end()) return Expr::Ref(it->second);
  const std::string name = UniqueRuleName(g_, key);
  helpers_.emplace(std::string(key), name);
  const size_t index = g_.rules.size();
  g_.rules.push_back(Rule{name, Expr::Empty()});  // reserved first: value and object recurse
  Expr body;
  const Expr quote = Lit("\"");
  if (key == "ws") {
    body = Opt(Alt({Lit(" "), Seq({Lit("\n"), Rep(Expr::CharClass({{'\t', '\t'}, {' ', ' '}}), 0,
                                                  std::max(0, options_.max_indent))})}));
  } else if (key == "char") {
    // \uXXXX never names a lone surrogate (JSON parsers such as nlohmann's and serde_json refuse
    // one): D800-DBFF only as the first half of a pair with DC00-DFFF, the pair one character.
    const auto hex = [](int n) {
      return Rep(Expr::CharClass({{'0', '9'}, {'A', 'F'}, {'a', 'f'}}), n, n);
    };
    const Expr d = Expr::CharClass({{'D', 'D'}, {'d', 'd'}});
    const Expr not_surrogate =
        Alt({Seq({Expr::CharClass({{'0', '9'}, {'A', 'C'}, {'E', 'F'}, {'a', 'c'}, {'e', 'f'}}),
                  hex(3)}),
             Seq({d, Range('0', '7'), hex(2)})});
    const Expr pair = Seq({d, Expr::CharClass({{'8', '9'}, {'A', 'B'}, {'a', 'b'}}), hex(2),
                           Lit("\\u"), d, Expr::CharClass({{'C', 'F'}, {'c', 'f'}}), hex(2)});
    const Expr escape = Alt({Expr::CharClass({{'"', '"'},
                                              {'/', '/'},
                                              {'\\', '\\'},
                                              {'b', 'b'},
                                              {'f', 'f'},
                                              {'n', 'n'},
                                              {'r', 'r'},
                                              {'t', 't'}}),
                             Seq({Lit("u"), Alt({not_surrogate, pair})})});
    body = Alt({Expr::CharClass({{0x00, 0x1F}, {'"', '"'}, {'\\', '\\'}}, /*negated=*/true),
                Seq({Lit("\\"), escape})});
  } else if (key == "string") {
    body = Seq({quote, Rep(Helper("char"), 0, kUnbounded), quote});
  } else if (key == "number") {
    body =
        Seq({Opt(Lit("-")), Alt({Lit("0"), Seq({Range('1', '9'), Rep(Digits(), 0, kUnbounded)})}),
             Opt(Seq({Lit("."), Rep(Digits(), 1, kUnbounded)})),
             // Exponents of at most two digits: e999 is valid JSON but overflows a double, and
             // parsers such as nlohmann's refuse it.
             Opt(Seq({Expr::CharClass({{'E', 'E'}, {'e', 'e'}}),
                      Opt(Expr::CharClass({{'+', '+'}, {'-', '-'}})), Rep(Digits(), 1, 2)}))});
  } else if (key == "value") {
    body = Alt({Helper("object"), Helper("array"), Helper("string"), Helper("number"), Lit("true"),
                Lit("false"), Lit("null")});
  } else if (key == "object") {
    const Expr member = Seq({Helper("string"), Lit(":"), Ws(), Helper("value")});
    body = Seq({Lit("{"), Ws(),
                Opt(Seq({member, Rep(Seq({Lit(","), Ws(), member}), 0, kUnbounded), Ws()})),
                Lit("}")});
  } else if (key == "array") {
    const Expr value = Helper("value");
    body =
        Seq({Lit("["), Ws(),
             Opt(Seq({value, Rep(Seq({Lit(","), Ws(), value}), 0, kUnbounded), Ws()})), Lit("]")});
  }
  g_.rules[index].body = std::move(body);
  return Expr::Ref(name);
}

Grammar JsonSchemaConverter::AnyObject() {
  g_.rules.push_back(Rule{"root", Expr::Empty()});
  g_.rules[0].body = Helper("object");
  return std::move(g_);
}

absl::StatusOr<Expr> JsonSchemaConverter::ObjectBody(const Json& schema, const Place& at) {
  static const Json kNoProperties = Json::object();
  const Json& properties = schema.contains("properties") ? schema["properties"] : kNoProperties;
  if (!properties.is_object()) return Error(at, "keyword 'properties' must be an object");
  std::vector<std::string> required;
  if (schema.contains("required")) {
    if (!schema["required"].is_array()) return Error(at, "keyword 'required' must be an array");
    for (const Json& name : schema["required"]) {
      if (!name.is_string()) return Error(at, "keyword 'required' must hold strings");
      if (!properties.contains(name.get<std::string>())) {
        return Error(at, absl::StrCat("required property '", name.get<std::string>(),
                                      "' is not declared in 'properties'"));
      }
      required.push_back(name.get<std::string>());
    }
  }
  // Extra members: additionalProperties true or a schema (absent: options decide).
  std::optional<Expr> extra_value;
  const Json additional =
      schema.value("additionalProperties", Json(!options_.strict_additional_properties));
  if (additional != Json(false)) {
    absl::StatusOr<Expr> value = Value(additional, at.Child("additionalProperties", "additional"));
    if (!value.ok()) return value.status();
    extra_value = *std::move(value);
  }

  const Expr sep = Seq({Lit(","), Ws()});
  std::vector<Expr> members;
  std::vector<bool> is_required;
  for (const auto& [key, value_schema] : properties.items()) {
    absl::StatusOr<Expr> value =
        Value(value_schema, at.Child(absl::StrCat("properties/", key), key));
    if (!value.ok()) return value.status();
    members.push_back(Seq({Lit(Json(key).dump()), Lit(":"), Ws(), *std::move(value)}));
    is_required.push_back(std::find(required.begin(), required.end(), key) != required.end());
  }
  std::optional<Expr> extra_member;
  if (extra_value) extra_member = Seq({Helper("string"), Lit(":"), Ws(), *extra_value});
  // The members after member i, given that something was written before them (each takes a
  // leading comma): declared ones in order, optional ones skippable, then any extra ones.
  const size_t n = members.size();
  const auto item = [&](size_t j) {
    Expr e = Seq({sep, members[j]});
    return is_required[j] ? e : Opt(std::move(e));
  };
  const Expr extras = extra_member ? Rep(Seq({sep, *extra_member}), 0, kUnbounded) : Expr::Empty();
  // Each member that may come first (those up to the first required one) needs the rest after
  // it. Written out that is quadratic in the members; past a small size the rests become a chain
  // of rules `<object>-tail-<k>` (members k..n-1), linear.
  const size_t leading =
      std::min(n, static_cast<size_t>(std::find(is_required.begin(), is_required.end(), true) -
                                      is_required.begin()) +
                      1);
  std::vector<std::string> tail_rules;
  if (leading >= 2 && leading * n > 64) {
    const size_t first_index = g_.rules.size();
    for (size_t k = 1; k < n; ++k) {
      tail_rules.push_back(UniqueRuleName(g_, absl::StrCat(at.name, "-tail-", k)));
      g_.rules.push_back(Rule{tail_rules.back(), Expr::Empty()});
    }
    for (size_t k = 1; k < n; ++k) {
      g_.rules[first_index + k - 1].body =
          Seq({item(k), k + 1 < n ? Expr::Ref(tail_rules[k]) : extras});
    }
  }
  const auto rest_after = [&](size_t i) {
    if (!tail_rules.empty()) return i + 1 < n ? Expr::Ref(tail_rules[i]) : extras;
    std::vector<Expr> items;
    for (size_t j = i + 1; j < n; ++j) items.push_back(item(j));
    items.push_back(extras);
    return Seq(std::move(items));
  };
  // The first member written: any declared one up to the first required one, or an extra one
  // when every declared member is optional.
  std::vector<Expr> firsts;
  bool all_optional = true;
  for (size_t i = 0; i < members.size(); ++i) {
    firsts.push_back(Seq({members[i], rest_after(i)}));
    if (is_required[i]) {
      all_optional = false;
      break;
    }
  }
  if (all_optional && extra_member) {
    firsts.push_back(Seq({*extra_member, Rep(Seq({sep, *extra_member}), 0, kUnbounded)}));
  }
  if (firsts.empty()) return Seq({Lit("{"), Ws(), Lit("}")});
  Expr content = Seq({Alt(std::move(firsts)), Ws()});
  if (all_optional) content = Opt(std::move(content));
  return Seq({Lit("{"), Ws(), std::move(content), Lit("}")});
}

absl::StatusOr<Expr> JsonSchemaConverter::ArrayBody(const Json& schema, const Place& at) {
  // Draft 2020-12 spells a tuple prefixItems + items; earlier drafts items[] + additionalItems.
  const bool legacy_tuple = schema.contains("items") && schema["items"].is_array();
  const std::string prefix_keyword = legacy_tuple ? "items" : "prefixItems";
  const std::string rest_keyword = legacy_tuple ? "additionalItems" : "items";
  std::vector<Expr> prefix;
  if (schema.contains(prefix_keyword)) {
    const Json& items = schema[prefix_keyword];
    if (!items.is_array()) return Error(at, "keyword 'prefixItems' must be an array");
    for (size_t i = 0; i < items.size(); ++i) {
      absl::StatusOr<Expr> item =
          Value(items[i], at.Child(absl::StrCat(prefix_keyword, "/", i), std::to_string(i)));
      if (!item.ok()) return item.status();
      prefix.push_back(*std::move(item));
    }
  }
  std::optional<Expr> rest;
  const Json rest_schema = schema.value(rest_keyword, Json(true));
  if (rest_schema != Json(false)) {
    absl::StatusOr<Expr> item = Value(rest_schema, at.Child(rest_keyword, "item"));
    if (!item.ok()) return item.status();
    rest = *std::move(item);
  }
  absl::StatusOr<int64_t> min_items = Count(schema, "minItems", 0, at);
  if (!min_items.ok()) return min_items.status();
  absl::StatusOr<int64_t> max_items = Count(schema, "maxItems", kUnbounded, at);
  if (!max_items.ok()) return max_items.status();
  if (*max_items != kUnbounded && *min_items > *max_items) {
    return Error(at,
                 absl::StrCat("minItems ", *min_items, " is greater than maxItems ", *max_items));
  }
  if (!rest) {
    const int64_t n = static_cast<int64_t>(prefix.size());
    if (*min_items > n) {
      return Error(at, absl::StrCat("minItems ", *min_items, " exceeds the ", n,
                                    " prefixItems with no further items allowed"));
    }
    if (*max_items == kUnbounded || *max_items > n) *max_items = n;
  }
  if (*max_items == 0) return Seq({Lit("["), Ws(), Lit("]")});
  const int32_t lo = static_cast<int32_t>(*min_items);
  const int32_t hi = static_cast<int32_t>(*max_items);
  const Expr sep = Seq({Lit(","), Ws()});
  const size_t n_prefix =
      hi == kUnbounded ? prefix.size() : std::min(prefix.size(), static_cast<size_t>(hi));
  Expr content;
  if (n_prefix == 0) {
    content = Seq({*rest, Rep(Seq({sep, *rest}), std::max(0, lo - 1),
                              hi == kUnbounded ? kUnbounded : hi - 1)});
  } else {
    // Built from the back: item i, then (optionally, when the array may end after it) the rest.
    const int32_t k = static_cast<int32_t>(n_prefix);
    Expr tail = Expr::Empty();
    if (rest) {
      tail = Rep(Seq({sep, *rest}), std::max(0, lo - k), hi == kUnbounded ? kUnbounded : hi - k);
    }
    content = Seq({prefix[k - 1], std::move(tail)});
    for (int32_t i = k - 2; i >= 0; --i) {
      Expr more = Seq({sep, std::move(content)});
      content = Seq({prefix[i], i + 1 >= lo ? Opt(std::move(more)) : std::move(more)});
    }
  }
  if (lo == 0) return Seq({Lit("["), Ws(), Opt(Seq({std::move(content), Ws()})), Lit("]")});
  return Seq({Lit("["), Ws(), std::move(content), Ws(), Lit("]")});
}

}  // namespace expertmesh::grammar
