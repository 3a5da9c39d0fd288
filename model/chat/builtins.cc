#include "model/chat/builtins.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "model/chat/str_cat.h"
#include "model/chat/strings.h"

namespace expertmesh::chat {
namespace {

absl::Status TypeError(std::string_view what) {
  return absl::InvalidArgumentError(std::string(what));
}

const std::string* OptString(const Value* v) {
  return (v != nullptr && v->is_string()) ? &v->str() : nullptr;
}

int64_t OptInt(const Value* v, int64_t fallback) {
  return (v != nullptr && (v->is_int() || v->is_bool())) ? v->int_value() : fallback;
}

// jinja2 attribute lookup used by map/selectattr/join(attribute=...): dotted path, item access.
Value GetAttributePath(const Value& v, const std::string& path) {
  Value cur = v;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? dot : dot - start);
    const Value* next = cur.Find(part);
    if (next == nullptr) return Value::Undefined(part);
    cur = *next;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return cur;
}

absl::StatusOr<Value> SelectOrReject(const Value& input, const CallArgs& args, bool by_attr,
                                     bool select) {
  ASSIGN_OR_RETURN(ValueList items, Iterate(input));
  size_t next = 0;
  std::string attr;
  if (by_attr) {
    const std::string* a = OptString(args.Get(next++, "attribute"));
    if (a == nullptr) return TypeError("selectattr/rejectattr: missing attribute name");
    attr = *a;
  }
  const std::string* test = OptString(args.Get(next++, ""));
  CallArgs test_args;
  for (size_t i = next; i < args.args.size(); ++i) test_args.args.push_back(args.args[i]);
  ValueList out;
  for (const Value& item : items) {
    const Value subject = by_attr ? GetAttributePath(item, attr) : item;
    bool passed = subject.Truthy();
    if (test != nullptr) {
      ASSIGN_OR_RETURN(passed, ApplyTest(*test, subject, test_args));
    }
    if (passed == select) out.push_back(item);
  }
  return Value::List(std::move(out));
}

// Python ordering used by sort/dictsort: numbers together, strings together.
bool Less(const Value& a, const Value& b, bool case_sensitive) {
  if (a.is_number() && b.is_number()) return a.as_double() < b.as_double();
  if (a.is_string() && b.is_string()) {
    return case_sensitive ? a.str() < b.str() : PyLower(a.str()) < PyLower(b.str());
  }
  return a.TypeName() < b.TypeName();
}

}  // namespace

const Value* CallArgs::Get(size_t i, std::string_view name) const {
  if (i < args.size()) return &args[i];
  for (const auto& [k, v] : kwargs) {
    if (k == name) return &v;
  }
  return nullptr;
}

absl::StatusOr<ValueList> Iterate(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return ValueList{};
    case Value::Kind::kList:
      return value.list();
    case Value::Kind::kDict: {
      ValueList keys;
      for (const auto& [k, v] : value.dict()) keys.push_back(Value::String(k));
      return keys;
    }
    case Value::Kind::kString: {
      ValueList chars;
      for (uint32_t cp : DecodeUtf8(value.str())) chars.push_back(Value::String(EncodeUtf8({cp})));
      return chars;
    }
    default:
      return TypeError(Cat("'", value.TypeName(), "' object is not iterable"));
  }
}

absl::StatusOr<int64_t> Length(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return 0;
    case Value::Kind::kString:
      return static_cast<int64_t>(DecodeUtf8(value.str()).size());
    case Value::Kind::kList:
      return static_cast<int64_t>(value.list().size());
    case Value::Kind::kDict:
      return static_cast<int64_t>(value.dict().size());
    default:
      return TypeError(Cat("object of type '", value.TypeName(), "' has no len()"));
  }
}

absl::StatusOr<Value> ApplyFilter(std::string_view name, const Value& input, const CallArgs& args) {
  if (name == "tojson") {
    const Value* indent = args.Get(0, "indent");
    ASSIGN_OR_RETURN(
        std::string json,
        ToJson(input, (indent && indent->is_int()) ? static_cast<int>(indent->int_value()) : -1));
    return Value::String(std::move(json));
  }
  if (name == "trim") {
    return Value::String(PyStrip(input.ToString(), OptString(args.Get(0, "chars")), true, true));
  }
  if (name == "length" || name == "count") {
    ASSIGN_OR_RETURN(int64_t n, Length(input));
    return Value::Int(n);
  }
  if (name == "string") return input.is_string() ? input : Value::String(input.ToString());
  if (name == "safe") return input;
  if (name == "upper") return Value::String(PyUpper(input.ToString()));
  if (name == "lower") return Value::String(PyLower(input.ToString()));
  if (name == "title") return Value::String(PyTitle(input.ToString()));
  if (name == "capitalize") return Value::String(PyCapitalize(input.ToString()));
  if (name == "replace") {
    const std::string* from = OptString(args.Get(0, "old"));
    const std::string* to = OptString(args.Get(1, "new"));
    if (from == nullptr || to == nullptr) return TypeError("replace: expects two strings");
    return Value::String(PyReplace(input.ToString(), *from, *to, OptInt(args.Get(2, "count"), -1)));
  }
  if (name == "default" || name == "d") {
    const Value* fallback = args.Get(0, "default_value");
    const Value* boolean = args.Get(1, "boolean");
    const bool use_fallback =
        input.is_undefined() || (boolean != nullptr && boolean->Truthy() && !input.Truthy());
    if (!use_fallback) return input;
    return fallback ? *fallback : Value::String("");
  }
  if (name == "join") {
    ASSIGN_OR_RETURN(ValueList items, Iterate(input));
    const Value* sep = args.Get(0, "d");
    const std::string* attr = OptString(args.Get(1, "attribute"));
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0 && sep != nullptr) out += sep->ToString();
      out += (attr ? GetAttributePath(items[i], *attr) : items[i]).ToString();
    }
    return Value::String(std::move(out));
  }
  if (name == "first" || name == "last") {
    ASSIGN_OR_RETURN(ValueList items, Iterate(input));
    if (items.empty()) return Value::Undefined("first");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "list") {
    ASSIGN_OR_RETURN(ValueList items, Iterate(input));
    return Value::List(std::move(items));
  }
  if (name == "reverse") {
    if (input.is_string()) {
      std::vector<uint32_t> cps = DecodeUtf8(input.str());
      std::reverse(cps.begin(), cps.end());
      return Value::String(EncodeUtf8(cps));
    }
    ASSIGN_OR_RETURN(ValueList items, Iterate(input));
    std::reverse(items.begin(), items.end());
    return Value::List(std::move(items));
  }
  if (name == "unique") {
    ASSIGN_OR_RETURN(ValueList items, Iterate(input));
    ValueList out;
    for (const Value& item : items) {
      const bool seen = std::any_of(out.begin(), out.end(), [&](const Value& o) {
        return (item.is_string() && o.is_string()) ? PyLower(item.str()) == PyLower(o.str())
                                                   : item.Equals(o);
      });
      if (!seen) out.push_back(item);
    }
    return Value::List(std::move(out));
  }
  if (name == "items") {
    if (input.is_undefined()) return Value::List({});
    if (!input.is_dict()) return TypeError("items: expects a mapping");
    ValueList out;
    for (const auto& [k, v] : input.dict()) out.push_back(Value::List({Value::String(k), v}));
    return Value::List(std::move(out));
  }
  if (name == "dictsort") {
    if (!input.is_dict()) return TypeError("dictsort: expects a mapping");
    const bool case_sensitive =
        args.Get(0, "case_sensitive") && args.Get(0, "case_sensitive")->Truthy();
    const std::string* by = OptString(args.Get(1, "by"));
    const bool by_value = by != nullptr && *by == "value";
    const bool reverse = args.Get(2, "reverse") && args.Get(2, "reverse")->Truthy();
    ValueDict items = input.dict();
    std::stable_sort(items.begin(), items.end(), [&](const auto& a, const auto& b) {
      const Value ka = by_value ? a.second : Value::String(a.first);
      const Value kb = by_value ? b.second : Value::String(b.first);
      return reverse ? Less(kb, ka, case_sensitive) : Less(ka, kb, case_sensitive);
    });
    ValueList out;
    for (auto& [k, v] : items) out.push_back(Value::List({Value::String(k), v}));
    return Value::List(std::move(out));
  }
  if (name == "map") {
    ASSIGN_OR_RETURN(ValueList items, Iterate(input));
    const std::string* attr = OptString(args.Get(99, "attribute"));
    ValueList out;
    if (attr != nullptr) {
      const Value* fallback = args.Get(99, "default");
      for (const Value& item : items) {
        Value v = GetAttributePath(item, *attr);
        out.push_back(v.is_undefined() && fallback ? *fallback : v);
      }
    } else {
      const std::string* filter = OptString(args.Get(0, ""));
      if (filter == nullptr) return TypeError("map: expects a filter name or attribute=");
      CallArgs rest;
      for (size_t i = 1; i < args.args.size(); ++i) rest.args.push_back(args.args[i]);
      for (const Value& item : items) {
        ASSIGN_OR_RETURN(Value v, ApplyFilter(*filter, item, rest));
        out.push_back(std::move(v));
      }
    }
    return Value::List(std::move(out));
  }
  if (name == "select") return SelectOrReject(input, args, false, true);
  if (name == "reject") return SelectOrReject(input, args, false, false);
  if (name == "selectattr") return SelectOrReject(input, args, true, true);
  if (name == "rejectattr") return SelectOrReject(input, args, true, false);
  if (name == "int") {
    if (input.is_int() || input.is_bool()) return Value::Int(input.int_value());
    if (input.is_float()) return Value::Int(static_cast<int64_t>(input.float_value()));
    if (input.is_string()) {
      const std::string s = PyStrip(input.str(), nullptr, true, true);
      char* end = nullptr;
      const long long v = std::strtoll(s.c_str(), &end, 10);
      if (!s.empty() && end == s.c_str() + s.size()) return Value::Int(v);
      const double d = std::strtod(s.c_str(), &end);
      if (!s.empty() && end == s.c_str() + s.size()) return Value::Int(static_cast<int64_t>(d));
    }
    const Value* fallback = args.Get(0, "default");
    return fallback ? *fallback : Value::Int(0);
  }
  if (name == "float") {
    if (input.is_number()) return Value::Float(input.as_double());
    if (input.is_string()) {
      const std::string s = PyStrip(input.str(), nullptr, true, true);
      char* end = nullptr;
      const double d = std::strtod(s.c_str(), &end);
      if (!s.empty() && end == s.c_str() + s.size()) return Value::Float(d);
    }
    const Value* fallback = args.Get(0, "default");
    return fallback ? *fallback : Value::Float(0.0);
  }
  if (name == "abs") {
    if (input.is_float()) return Value::Float(std::fabs(input.float_value()));
    if (input.is_int() || input.is_bool()) return Value::Int(std::llabs(input.int_value()));
    return TypeError(Cat("bad operand type for abs(): '", input.TypeName(), "'"));
  }
  if (name == "round") {
    if (!input.is_number()) return TypeError("round: expects a number");
    const int64_t precision = OptInt(args.Get(0, "precision"), 0);
    const std::string* method = OptString(args.Get(1, "method"));
    const double scale = std::pow(10.0, static_cast<double>(precision));
    const double x = input.as_double() * scale;
    double r;
    if (method == nullptr || *method == "common") {
      r = std::round(x);
    } else if (*method == "floor") {
      r = std::floor(x);
    } else if (*method == "ceil") {
      r = std::ceil(x);
    } else {
      return TypeError("round: method must be common, floor or ceil");
    }
    return Value::Float(r / scale);
  }
  if (name == "sort") {
    ASSIGN_OR_RETURN(ValueList items, Iterate(input));
    const bool reverse = args.Get(0, "reverse") && args.Get(0, "reverse")->Truthy();
    const bool case_sensitive =
        args.Get(1, "case_sensitive") && args.Get(1, "case_sensitive")->Truthy();
    const std::string* attr = OptString(args.Get(2, "attribute"));
    std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
      const Value ka = attr ? GetAttributePath(a, *attr) : a;
      const Value kb = attr ? GetAttributePath(b, *attr) : b;
      return reverse ? Less(kb, ka, case_sensitive) : Less(ka, kb, case_sensitive);
    });
    return Value::List(std::move(items));
  }
  return absl::InvalidArgumentError(Cat("no filter named '", name, "'"));
}

absl::StatusOr<bool> ApplyTest(std::string_view name, const Value& input, const CallArgs& args) {
  const Value* arg = args.Get(0, "");
  if (name == "defined") return !input.is_undefined();
  if (name == "undefined") return input.is_undefined();
  if (name == "none") return input.is_none();
  if (name == "string") return input.is_string();
  if (name == "mapping") return input.is_dict();
  if (name == "number") return input.is_number();
  if (name == "integer") return input.is_int();
  if (name == "float") return input.is_float();
  if (name == "boolean") return input.is_bool();
  if (name == "true") return input.is_bool() && input.bool_value();
  if (name == "false") return input.is_bool() && !input.bool_value();
  if (name == "iterable") return input.is_list() || input.is_dict() || input.is_string();
  if (name == "sequence") return input.is_list() || input.is_dict() || input.is_string();
  if (name == "callable") return input.is_callable();
  if (name == "lower") return input.is_string() && PyLower(input.str()) == input.str();
  if (name == "upper") return input.is_string() && PyUpper(input.str()) == input.str();
  if (name == "odd" || name == "even") {
    if (!input.is_int()) return TypeError("odd/even: expects an integer");
    return (input.int_value() % 2 != 0) == (name == "odd");
  }
  if (arg == nullptr) {
    return absl::InvalidArgumentError(Cat("no test named '", name, "' without argument"));
  }
  if (name == "equalto" || name == "eq" || name == "==" || name == "sameas") {
    return input.Equals(*arg);
  }
  if (name == "ne" || name == "!=") return !input.Equals(*arg);
  if (name == "divisibleby") {
    if (!input.is_int() || !arg->is_int() || arg->int_value() == 0) {
      return TypeError("divisibleby: expects non-zero integers");
    }
    return input.int_value() % arg->int_value() == 0;
  }
  if (name == "gt" || name == "lt" || name == "ge" || name == "le") {
    if (!(input.is_number() && arg->is_number()) && !(input.is_string() && arg->is_string())) {
      return TypeError("comparison test: operands not comparable");
    }
    const bool lt = Less(input, *arg, true), gt = Less(*arg, input, true);
    if (name == "gt") return gt;
    if (name == "lt") return lt;
    if (name == "ge") return !lt;
    return !gt;
  }
  if (name == "in") {
    if (arg->is_string() && input.is_string())
      return arg->str().find(input.str()) != std::string::npos;
    if (arg->is_dict()) return input.is_string() && arg->Find(input.str()) != nullptr;
    if (arg->is_list()) {
      return std::any_of(arg->list().begin(), arg->list().end(),
                         [&](const Value& v) { return v.Equals(input); });
    }
    return TypeError("in: expects a container");
  }
  return absl::InvalidArgumentError(Cat("no test named '", name, "'"));
}

bool HasMethod(const Value& receiver, std::string_view name) {
  static constexpr std::string_view kStr[] = {
      "strip",   "lstrip", "rstrip",     "split",   "startswith", "endswith",
      "replace", "upper",  "lower",      "title",   "capitalize", "find",
      "count",   "join",   "splitlines", "isdigit", "isalpha",    "isspace"};
  static constexpr std::string_view kDict[] = {"items", "keys", "values", "get"};
  if (receiver.is_string())
    return std::find(std::begin(kStr), std::end(kStr), name) != std::end(kStr);
  if (receiver.is_dict())
    return std::find(std::begin(kDict), std::end(kDict), name) != std::end(kDict);
  return false;
}

absl::StatusOr<Value> CallMethod(const Value& receiver, std::string_view name,
                                 const CallArgs& args) {
  const Value* a0 = args.Get(0, "");
  if (receiver.is_dict()) {
    if (name == "items") return ApplyFilter("items", receiver, {});
    if (name == "get") {
      if (a0 == nullptr || !a0->is_string()) return Value::None();
      const Value* found = receiver.Find(a0->str());
      if (found != nullptr) return *found;
      const Value* fallback = args.Get(1, "default");
      return fallback ? *fallback : Value::None();
    }
    ValueList out;
    for (const auto& [k, v] : receiver.dict()) out.push_back(name == "keys" ? Value::String(k) : v);
    return Value::List(std::move(out));
  }
  const std::string& s = receiver.str();
  auto need_string = [&](const Value* v) -> absl::StatusOr<std::string> {
    if (v == nullptr || !v->is_string()) {
      return TypeError(Cat("str.", name, "() argument must be str"));
    }
    return v->str();
  };
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    if (a0 != nullptr && !a0->is_string() && !a0->is_none()) {
      return TypeError(Cat("str.", name, "() arg must be None or str"));
    }
    const std::string* chars = (a0 && a0->is_string()) ? &a0->str() : nullptr;
    return Value::String(PyStrip(s, chars, name != "rstrip", name != "lstrip"));
  }
  if (name == "split") {
    const Value* sep = args.Get(0, "sep");
    if (sep != nullptr && sep->is_string() && sep->str().empty())
      return TypeError("empty separator");
    const std::string* sep_str = (sep && sep->is_string()) ? &sep->str() : nullptr;
    ValueList out;
    for (auto& part : PySplit(s, sep_str, OptInt(args.Get(1, "maxsplit"), -1))) {
      out.push_back(Value::String(std::move(part)));
    }
    return Value::List(std::move(out));
  }
  if (name == "startswith" || name == "endswith") {
    ValueList candidates = (a0 && a0->is_list()) ? a0->list() : ValueList{a0 ? *a0 : Value()};
    for (const Value& c : candidates) {
      ASSIGN_OR_RETURN(std::string p, need_string(&c));
      const bool hit = name == "startswith" ? s.compare(0, p.size(), p) == 0
                                            : (s.size() >= p.size() &&
                                               s.compare(s.size() - p.size(), p.size(), p) == 0);
      if (hit) return Value::Bool(true);
    }
    return Value::Bool(false);
  }
  if (name == "replace") {
    ASSIGN_OR_RETURN(std::string from, need_string(a0));
    ASSIGN_OR_RETURN(std::string to, need_string(args.Get(1, "")));
    return Value::String(PyReplace(s, from, to, OptInt(args.Get(2, "count"), -1)));
  }
  if (name == "upper") return Value::String(PyUpper(s));
  if (name == "lower") return Value::String(PyLower(s));
  if (name == "title") return Value::String(PyTitle(s));
  if (name == "capitalize") return Value::String(PyCapitalize(s));
  if (name == "find" || name == "count") {
    ASSIGN_OR_RETURN(std::string needle, need_string(a0));
    if (name == "find") {
      const size_t hit = s.find(needle);
      if (hit == std::string::npos) return Value::Int(-1);
      return Value::Int(static_cast<int64_t>(DecodeUtf8(s.substr(0, hit)).size()));
    }
    if (needle.empty()) return Value::Int(static_cast<int64_t>(DecodeUtf8(s).size()) + 1);
    int64_t n = 0;
    for (size_t i = s.find(needle); i != std::string::npos; i = s.find(needle, i + needle.size()))
      ++n;
    return Value::Int(n);
  }
  if (name == "join") {
    if (a0 == nullptr) return TypeError("str.join() takes exactly one argument");
    ASSIGN_OR_RETURN(ValueList items, Iterate(*a0));
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_string()) return TypeError("sequence item: expected str instance");
      if (i > 0) out += s;
      out += items[i].str();
    }
    return Value::String(std::move(out));
  }
  if (name == "splitlines") {
    ValueList out;
    std::string_view rest = s;
    while (!rest.empty()) {
      const size_t nl = rest.find('\n');
      out.push_back(Value::String(std::string(rest.substr(0, nl))));
      if (nl == std::string_view::npos) break;
      rest.remove_prefix(nl + 1);
    }
    return Value::List(std::move(out));
  }
  const std::vector<uint32_t> cps = DecodeUtf8(s);
  if (name == "isspace") {
    return Value::Bool(!cps.empty() && std::all_of(cps.begin(), cps.end(), IsPythonSpace));
  }
  if (name == "isdigit") {
    return Value::Bool(!cps.empty() && std::all_of(cps.begin(), cps.end(), [](uint32_t c) {
      return c >= '0' && c <= '9';
    }));
  }
  if (name == "isalpha") {
    return Value::Bool(!cps.empty() && std::all_of(cps.begin(), cps.end(), [](uint32_t c) {
      return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
    }));
  }
  return absl::InvalidArgumentError(Cat("'str' object has no method '", name, "'"));
}

}  // namespace expertmesh::chat
