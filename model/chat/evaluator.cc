#include "model/chat/evaluator.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "model/chat/builtins.h"
#include "model/chat/lexer.h"
#include "model/chat/str_cat.h"
#include "model/chat/strings.h"

namespace expertmesh::chat {
namespace {

enum class Flow { kNormal, kBreak, kContinue };

// Macro calls nest this deep at most (recursive macros such as gpt-oss's type renderer recurse
// once per level of a JSON schema); deeper fails instead of overflowing the stack.
constexpr int kMaxMacroDepth = 100;

class Evaluator {
 public:
  Evaluator(std::string_view source, const Value& context, const EvalOptions& options)
      : source_(source), options_(options) {
    scopes_.emplace_back();
    for (const char* name : {"raise_exception", "strftime_now", "namespace", "range", "dict"}) {
      scopes_.back()[name] = Value::Builtin(name);
    }
    for (const auto& [k, v] : context.dict()) scopes_.back()[k] = v;
  }

  absl::StatusOr<std::string> Run(const Body& body) {
    ASSIGN_OR_RETURN(Flow flow, Exec(body));
    (void)flow;
    return std::move(out_);
  }

 private:
  using Scope = std::unordered_map<std::string, Value>;

  absl::Status Fail(size_t offset, std::string_view message) const {
    return absl::InvalidArgumentError(
        Cat("chat template error at ", DescribePosition(source_, offset), ": ", message));
  }
  absl::Status Wrap(size_t offset, const absl::Status& s) const {
    if (s.ok() || raised_ || s.code() == absl::StatusCode::kResourceExhausted) return s;
    return Fail(offset, std::string(s.message()));
  }
  absl::Status CheckSize(size_t size) const {
    if (size > options_.limits.max_output_bytes) {
      return absl::ResourceExhaustedError(
          Cat("chat template output exceeds ", options_.limits.max_output_bytes, " bytes"));
    }
    return absl::OkStatus();
  }
  absl::Status CountIterations(int64_t n) {
    iterations_ += n;
    if (iterations_ > options_.limits.max_loop_iterations) {
      return absl::ResourceExhaustedError(
          Cat("chat template exceeds ", options_.limits.max_loop_iterations, " loop iterations"));
    }
    return absl::OkStatus();
  }

  // Inside a macro only its own frame (scopes from frame_base_ up) and the template's
  // top-level scope are visible, as in jinja2: a macro does not see its caller's loop variables.
  Value Lookup(const std::string& name) const {
    for (size_t i = scopes_.size(); i-- > 0;) {
      if (i > 0 && i < frame_base_) continue;
      auto found = scopes_[i].find(name);
      if (found != scopes_[i].end()) return found->second;
    }
    return Value::Undefined(name);
  }

  // The variables a macro or caller defined here closes over: everything visible except the
  // top-level scope, which every macro sees live anyway.
  ValueDict Closure() const {
    ValueDict closure;
    for (size_t i = std::max<size_t>(frame_base_, 1); i < scopes_.size(); ++i) {
      for (const auto& [k, v] : scopes_[i]) {
        bool replaced = false;
        for (auto& [key, existing] : closure) {
          if (key == k) {
            existing = v;
            replaced = true;
          }
        }
        if (!replaced) closure.emplace_back(k, v);
      }
    }
    return closure;
  }

  // Runs a macro (or a {% call %} block's caller) in a frame of its own and returns what it
  // printed. Arguments bind as in jinja2: positional, then keyword; a parameter left unbound
  // takes its default, evaluated inside the frame, or stays undefined.
  absl::StatusOr<Value> CallMacro(const Value& macro, const CallArgs& args, const Value* caller,
                                  size_t offset) {
    const Node& def = *macro.macro();
    const std::string& name = macro.str();
    if (macro_depth_ >= kMaxMacroDepth) {
      return absl::ResourceExhaustedError(
          Cat("chat template macro calls nest deeper than ", kMaxMacroDepth));
    }
    const std::vector<std::string>& params = def.targets;
    if (args.args.size() > params.size()) {
      return Fail(offset,
                  Cat("macro '", name, "' takes not more than ", params.size(), " argument(s)"));
    }
    Scope frame;
    for (const auto& [k, v] : macro.dict()) frame[k] = v;
    std::vector<bool> bound(params.size(), false);
    for (size_t i = 0; i < args.args.size(); ++i) {
      frame[params[i]] = args.args[i];
      bound[i] = true;
    }
    for (const auto& [k, v] : args.kwargs) {
      const size_t i = std::find(params.begin(), params.end(), k) - params.begin();
      if (i == params.size() || bound[i]) {  // jinja2 words a repeated argument the same way
        return Fail(offset, Cat("macro '", name, "' takes no keyword argument '", k, "'"));
      }
      frame[k] = v;
      bound[i] = true;
    }
    if (caller != nullptr) frame["caller"] = *caller;
    scopes_.push_back(std::move(frame));
    const size_t saved_base = frame_base_;
    frame_base_ = scopes_.size() - 1;
    ++macro_depth_;
    std::string saved_out = std::move(out_);
    out_.clear();
    absl::Status status = [&]() -> absl::Status {
      for (size_t i = 0; i < params.size(); ++i) {
        if (bound[i]) continue;
        Value v = Value::Undefined(params[i]);
        if (def.defaults[i]) {
          ASSIGN_OR_RETURN(v, Eval(*def.defaults[i]));
        }
        scopes_.back()[params[i]] = std::move(v);
      }
      return Exec(def.body).status();
    }();
    std::string printed = std::move(out_);
    out_ = std::move(saved_out);
    --macro_depth_;
    frame_base_ = saved_base;
    scopes_.pop_back();
    RETURN_IF_ERROR(status);
    return Value::String(std::move(printed));
  }

  absl::Status Assign(const std::vector<std::string>& targets, const Value& value, size_t offset) {
    if (targets.size() == 1) {
      scopes_.back()[targets[0]] = value;
      return absl::OkStatus();
    }
    if (!value.is_list() || value.list().size() != targets.size()) {
      return Fail(offset,
                  Cat("cannot unpack ", value.TypeName(), " into ", targets.size(), " names"));
    }
    for (size_t i = 0; i < targets.size(); ++i) scopes_.back()[targets[i]] = value.list()[i];
    return absl::OkStatus();
  }

  // ---- statements ----
  absl::StatusOr<Flow> Exec(const Body& body) {
    for (const NodePtr& node : body) {
      ASSIGN_OR_RETURN(Flow flow, ExecNode(*node));
      if (flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }

  absl::StatusOr<Flow> ExecNode(const Node& node) {
    switch (node.kind) {
      case NodeKind::kText:
        out_ += node.text;
        RETURN_IF_ERROR(CheckSize(out_.size()));
        return Flow::kNormal;
      case NodeKind::kOutput: {
        ASSIGN_OR_RETURN(Value v, Eval(*node.expr));
        out_ += v.ToString();
        RETURN_IF_ERROR(CheckSize(out_.size()));
        return Flow::kNormal;
      }
      case NodeKind::kIf:
        for (const IfBranch& branch : node.branches) {
          ASSIGN_OR_RETURN(Value cond, Eval(*branch.condition));
          if (cond.Truthy()) return Exec(branch.body);
        }
        return Exec(node.else_body);
      case NodeKind::kFor:
        return ExecFor(node);
      case NodeKind::kSet: {
        ASSIGN_OR_RETURN(Value v, Eval(*node.expr));
        if (node.attr.empty()) {
          RETURN_IF_ERROR(Assign(node.targets, v, node.offset));
          return Flow::kNormal;
        }
        const Value ns = Lookup(node.targets[0]);
        if (!ns.is_namespace()) {
          return Fail(node.offset, Cat("cannot assign attribute on non-namespace object '",
                                       node.targets[0], "'"));
        }
        ValueDict& fields = ns.mutable_namespace();
        for (auto& [k, existing] : fields) {
          if (k == node.attr) {
            existing = v;
            return Flow::kNormal;
          }
        }
        fields.emplace_back(node.attr, v);
        return Flow::kNormal;
      }
      case NodeKind::kSetBlock: {
        std::string saved = std::move(out_);
        out_.clear();
        auto flow = Exec(node.body);
        std::string captured = std::move(out_);
        out_ = std::move(saved);
        if (!flow.ok()) return flow.status();
        scopes_.back()[node.targets[0]] = Value::String(std::move(captured));
        return Flow::kNormal;
      }
      case NodeKind::kMacro:
        scopes_.back()[node.attr] = Value::Macro(node.attr, &node, Closure());
        return Flow::kNormal;
      case NodeKind::kCallBlock: {
        const Expr& call = *node.expr;
        ASSIGN_OR_RETURN(Value callee, Eval(*call.children[0]));
        ASSIGN_OR_RETURN(CallArgs args, EvalArgs(call, 1));
        if (!callee.is_macro()) {
          return Fail(node.offset,
                      Cat("{% call %} expects a macro, got '", callee.TypeName(), "'"));
        }
        const Value caller = Value::Macro("caller", &node, Closure());
        ASSIGN_OR_RETURN(Value printed, CallMacro(callee, args, &caller, call.offset));
        out_ += printed.str();
        RETURN_IF_ERROR(CheckSize(out_.size()));
        return Flow::kNormal;
      }
      case NodeKind::kGeneration: {
        // transformers' tag is a call block, so the body runs as a caller: it sees everything
        // visible here, and what it sets stays inside it.
        scopes_.emplace_back();
        absl::StatusOr<Flow> flow = Exec(node.body);
        scopes_.pop_back();
        if (!flow.ok()) return flow.status();
        return Flow::kNormal;
      }
      case NodeKind::kBreak:
        return Flow::kBreak;
      case NodeKind::kContinue:
        return Flow::kContinue;
    }
    return Flow::kNormal;
  }

  absl::StatusOr<Flow> ExecFor(const Node& node) {
    ASSIGN_OR_RETURN(Value iterable, Eval(*node.expr));
    auto items_or = Iterate(iterable);
    if (!items_or.ok()) return Wrap(node.expr->offset, items_or.status());
    ValueList items = std::move(items_or).value();
    scopes_.emplace_back();
    if (node.filter) {
      ValueList kept;
      for (const Value& item : items) {
        RETURN_IF_ERROR(CountIterations(1));
        RETURN_IF_ERROR(Assign(node.targets, item, node.offset));
        ASSIGN_OR_RETURN(Value keep, Eval(*node.filter));
        if (keep.Truthy()) kept.push_back(item);
      }
      items = std::move(kept);
    }
    const int64_t n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      RETURN_IF_ERROR(CountIterations(1));
      ValueDict loop = {
          {"index", Value::Int(i + 1)},
          {"index0", Value::Int(i)},
          {"revindex", Value::Int(n - i)},
          {"revindex0", Value::Int(n - i - 1)},
          {"first", Value::Bool(i == 0)},
          {"last", Value::Bool(i == n - 1)},
          {"length", Value::Int(n)},
          {"previtem", i > 0 ? items[static_cast<size_t>(i - 1)] : Value::Undefined("previtem")},
          {"nextitem",
           i + 1 < n ? items[static_cast<size_t>(i + 1)] : Value::Undefined("nextitem")},
      };
      scopes_.back()["loop"] = Value::Dict(std::move(loop));
      RETURN_IF_ERROR(Assign(node.targets, items[static_cast<size_t>(i)], node.offset));
      auto flow = Exec(node.body);
      if (!flow.ok()) {
        scopes_.pop_back();
        return flow.status();
      }
      if (*flow == Flow::kBreak) break;
    }
    scopes_.pop_back();
    if (n == 0) return Exec(node.else_body);
    return Flow::kNormal;
  }

  // ---- expressions ----
  absl::StatusOr<CallArgs> EvalArgs(const Expr& e, size_t first) {
    CallArgs args;
    for (size_t i = first; i < e.children.size(); ++i) {
      ASSIGN_OR_RETURN(Value v, Eval(*e.children[i]));
      args.args.push_back(std::move(v));
    }
    for (const auto& [k, expr] : e.kwargs) {
      ASSIGN_OR_RETURN(Value v, Eval(*expr));
      args.kwargs.emplace_back(k, std::move(v));
    }
    return args;
  }

  absl::Status UndefinedError(const Value& v, size_t offset) const {
    return Fail(offset, Cat("'", v.str(), "' is undefined"));
  }

  absl::StatusOr<Value> Eval(const Expr& e) {
    switch (e.kind) {
      case ExprKind::kLiteral:
        return e.literal;
      case ExprKind::kName:
        return Lookup(e.name);
      case ExprKind::kList:
      case ExprKind::kTuple: {
        ASSIGN_OR_RETURN(CallArgs items, EvalArgs(e, 0));
        return Value::List(std::move(items.args));
      }
      case ExprKind::kDict: {
        ValueDict dict;
        for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
          ASSIGN_OR_RETURN(Value k, Eval(*e.children[i]));
          ASSIGN_OR_RETURN(Value v, Eval(*e.children[i + 1]));
          if (!k.is_string()) return Fail(e.offset, "dict keys must be strings");
          bool replaced = false;
          for (auto& [key, existing] : dict) {
            if (key == k.str()) {
              existing = v;
              replaced = true;
            }
          }
          if (!replaced) dict.emplace_back(k.str(), std::move(v));
        }
        return Value::Dict(std::move(dict));
      }
      case ExprKind::kGetAttr: {
        ASSIGN_OR_RETURN(Value obj, Eval(*e.children[0]));
        if (obj.is_undefined()) return UndefinedError(obj, e.offset);
        if (HasMethod(obj, e.name)) return Value::Method(obj, e.name);
        const Value* found = obj.Find(e.name);
        if (found != nullptr) return *found;
        return Value::Undefined(e.name);
      }
      case ExprKind::kGetItem: {
        ASSIGN_OR_RETURN(Value obj, Eval(*e.children[0]));
        ASSIGN_OR_RETURN(Value key, Eval(*e.children[1]));
        if (obj.is_undefined()) return UndefinedError(obj, e.offset);
        return GetItem(obj, key);
      }
      case ExprKind::kSlice:
        return EvalSlice(e);
      case ExprKind::kCall:
        return EvalCall(e);
      case ExprKind::kFilter: {
        ASSIGN_OR_RETURN(Value input, Eval(*e.children[0]));
        ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
        auto result = ApplyFilter(e.name, input, args);
        if (!result.ok()) return Wrap(e.offset, result.status());
        if (result->is_string()) RETURN_IF_ERROR(CheckSize(result->str().size()));
        return result;
      }
      case ExprKind::kTest: {
        ASSIGN_OR_RETURN(Value input, Eval(*e.children[0]));
        ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
        auto result = ApplyTest(e.name, input, args);
        if (!result.ok()) return Wrap(e.offset, result.status());
        return Value::Bool(*result != e.negated);
      }
      case ExprKind::kUnary: {
        ASSIGN_OR_RETURN(Value v, Eval(*e.children[0]));
        if (e.name == "not") return Value::Bool(!v.Truthy());
        if (v.is_undefined()) return UndefinedError(v, e.offset);
        if (!v.is_number()) {
          return Fail(e.offset,
                      Cat("bad operand type for unary ", e.name, ": '", v.TypeName(), "'"));
        }
        if (e.name == "+") return v.is_float() ? v : Value::Int(v.int_value());
        return v.is_float() ? Value::Float(-v.float_value()) : Value::Int(-v.int_value());
      }
      case ExprKind::kBinary:
        return EvalBinary(e);
      case ExprKind::kCompare: {
        ASSIGN_OR_RETURN(Value left, Eval(*e.children[0]));
        for (size_t i = 0; i < e.ops.size(); ++i) {
          ASSIGN_OR_RETURN(Value right, Eval(*e.children[i + 1]));
          auto ok = Compare(e.ops[i], left, right);
          if (!ok.ok()) return Wrap(e.offset, ok.status());
          if (!*ok) return Value::Bool(false);
          left = std::move(right);
        }
        return Value::Bool(true);
      }
      case ExprKind::kCond: {
        ASSIGN_OR_RETURN(Value test, Eval(*e.children[0]));
        if (test.Truthy()) return Eval(*e.children[1]);
        if (e.children[2]) return Eval(*e.children[2]);
        return Value::Undefined("");
      }
    }
    return Value::Undefined("");
  }

  static Value GetItem(const Value& obj, const Value& key) {
    if ((obj.is_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
      const int64_t n = obj.is_list() ? static_cast<int64_t>(obj.list().size())
                                      : static_cast<int64_t>(DecodeUtf8(obj.str()).size());
      int64_t i = key.int_value();
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::Undefined("index");
      if (obj.is_list()) return obj.list()[static_cast<size_t>(i)];
      return Value::String(EncodeUtf8({DecodeUtf8(obj.str())[static_cast<size_t>(i)]}));
    }
    if (key.is_string()) {
      if (const Value* found = obj.Find(key.str())) return *found;
      if (HasMethod(obj, key.str())) return Value::Method(obj, key.str());
      return Value::Undefined(key.str());
    }
    return Value::Undefined(key.ToString());
  }

  absl::StatusOr<Value> EvalSlice(const Expr& e) {
    ASSIGN_OR_RETURN(Value obj, Eval(*e.children[0]));
    if (obj.is_undefined()) return UndefinedError(obj, e.offset);
    int64_t parts[3];
    bool present[3];
    for (int i = 0; i < 3; ++i) {
      present[i] = false;
      if (!e.children[static_cast<size_t>(i) + 1]) continue;
      ASSIGN_OR_RETURN(Value v, Eval(*e.children[static_cast<size_t>(i) + 1]));
      if (v.is_none()) continue;
      if (!v.is_int()) return Fail(e.offset, "slice indices must be integers or None");
      parts[i] = v.int_value();
      present[i] = true;
    }
    const int64_t step = present[2] ? parts[2] : 1;
    if (step == 0) return Fail(e.offset, "slice step cannot be zero");
    std::vector<uint32_t> cps;
    int64_t n = 0;
    if (obj.is_list()) {
      n = static_cast<int64_t>(obj.list().size());
    } else if (obj.is_string()) {
      cps = DecodeUtf8(obj.str());
      n = static_cast<int64_t>(cps.size());
    } else {
      return Fail(e.offset, Cat("'", obj.TypeName(), "' object is not subscriptable"));
    }
    // Python's PySlice_AdjustIndices.
    auto adjust = [&](int64_t v, bool has, int64_t def) {
      if (!has) return def;
      if (v < 0) {
        v += n;
        if (v < 0) v = step < 0 ? -1 : 0;
      } else if (v >= n) {
        v = step < 0 ? n - 1 : n;
      }
      return v;
    };
    const int64_t start = adjust(parts[0], present[0], step < 0 ? n - 1 : 0);
    const int64_t stop = adjust(parts[1], present[1], step < 0 ? -1 : n);
    ValueList items;
    std::vector<uint32_t> out_cps;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      if (obj.is_list()) {
        items.push_back(obj.list()[static_cast<size_t>(i)]);
      } else {
        out_cps.push_back(cps[static_cast<size_t>(i)]);
      }
    }
    if (obj.is_list()) return Value::List(std::move(items));
    return Value::String(EncodeUtf8(out_cps));
  }

  absl::StatusOr<Value> EvalCall(const Expr& e) {
    ASSIGN_OR_RETURN(Value callee, Eval(*e.children[0]));
    ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
    if (callee.kind() == Value::Kind::kMethod) {
      auto result = CallMethod(callee.receiver(), callee.str(), args);
      if (!result.ok()) return Wrap(e.offset, result.status());
      return result;
    }
    if (callee.kind() == Value::Kind::kBuiltin) return CallBuiltin(callee.str(), args, e.offset);
    if (callee.is_macro()) return CallMacro(callee, args, nullptr, e.offset);
    if (callee.is_undefined()) return UndefinedError(callee, e.offset);
    return Fail(e.offset, Cat("'", callee.TypeName(), "' object is not callable"));
  }

  absl::StatusOr<Value> CallBuiltin(const std::string& name, const CallArgs& args, size_t offset) {
    if (name == "raise_exception") {
      raised_ = true;
      const Value* msg = args.Get(0, "message");
      return absl::InvalidArgumentError(msg ? msg->ToString() : "raise_exception()");
    }
    if (name == "namespace" || name == "dict") {
      ValueDict fields;
      if (!args.args.empty()) {
        if (!args.args[0].is_dict()) return Fail(offset, Cat(name, "() expects a dict"));
        fields = args.args[0].dict();
      }
      for (const auto& [k, v] : args.kwargs) fields.emplace_back(k, v);
      return name == "dict" ? Value::Dict(std::move(fields)) : Value::Namespace(std::move(fields));
    }
    if (name == "range") {
      int64_t v[3] = {0, 0, 1};
      if (args.args.empty() || args.args.size() > 3)
        return Fail(offset, "range() takes 1 to 3 arguments");
      for (const Value& a : args.args) {
        if (!a.is_int()) return Fail(offset, "range() arguments must be integers");
      }
      if (args.args.size() == 1) {
        v[1] = args.args[0].int_value();
      } else {
        v[0] = args.args[0].int_value();
        v[1] = args.args[1].int_value();
        if (args.args.size() == 3) v[2] = args.args[2].int_value();
      }
      if (v[2] == 0) return Fail(offset, "range() arg 3 must not be zero");
      const double count = std::ceil((static_cast<double>(v[1]) - static_cast<double>(v[0])) /
                                     static_cast<double>(v[2]));
      if (count > static_cast<double>(options_.limits.max_loop_iterations)) {
        return absl::ResourceExhaustedError(
            Cat("range() of ", count, " items exceeds the loop iteration limit"));
      }
      ValueList items;
      for (int64_t i = v[0]; v[2] > 0 ? i < v[1] : i > v[1]; i += v[2])
        items.push_back(Value::Int(i));
      return Value::List(std::move(items));
    }
    if (name == "strftime_now") {
      const Value* fmt = args.Get(0, "format");
      if (fmt == nullptr || !fmt->is_string())
        return Fail(offset, "strftime_now() expects a format string");
      std::tm tm{};
      if (options_.now) {
        tm = *options_.now;
      } else {
        const std::time_t t = std::time(nullptr);
        localtime_r(&t, &tm);
      }
      char buf[512];
      const size_t n = std::strftime(buf, sizeof(buf), fmt->str().c_str(), &tm);
      return Value::String(std::string(buf, n));
    }
    return Fail(offset, Cat("unknown function '", name, "'"));
  }

  absl::StatusOr<bool> Compare(const std::string& op, const Value& a, const Value& b) const {
    if (op == "==") return a.Equals(b);
    if (op == "!=") return !a.Equals(b);
    if (op == "in" || op == "not in") {
      bool found = false;
      if (b.is_string()) {
        if (!a.is_string()) {
          return absl::InvalidArgumentError(
              Cat("'in <string>' requires string as left operand, not ", a.TypeName()));
        }
        found = b.str().find(a.str()) != std::string::npos;
      } else if (b.is_list()) {
        for (const Value& v : b.list()) found = found || v.Equals(a);
      } else if (b.is_dict()) {
        found = a.is_string() && b.Find(a.str()) != nullptr;
      } else if (!b.is_undefined()) {
        return absl::InvalidArgumentError(
            Cat("argument of type '", b.TypeName(), "' is not iterable"));
      }
      return op == "in" ? found : !found;
    }
    int order;
    if (a.is_number() && b.is_number()) {
      order = a.as_double() < b.as_double() ? -1 : (a.as_double() > b.as_double() ? 1 : 0);
    } else if (a.is_string() && b.is_string()) {
      order = a.str().compare(b.str());
    } else {
      return absl::InvalidArgumentError(Cat("'", op, "' not supported between instances of '",
                                            a.TypeName(), "' and '", b.TypeName(), "'"));
    }
    if (op == "<") return order < 0;
    if (op == ">") return order > 0;
    if (op == "<=") return order <= 0;
    return order >= 0;
  }

  absl::StatusOr<Value> EvalBinary(const Expr& e) {
    ASSIGN_OR_RETURN(Value a, Eval(*e.children[0]));
    if (e.name == "and") return a.Truthy() ? Eval(*e.children[1]) : a;
    if (e.name == "or") return a.Truthy() ? a : Eval(*e.children[1]);
    ASSIGN_OR_RETURN(Value b, Eval(*e.children[1]));
    if (e.name == "~") {
      std::string s = a.ToString() + b.ToString();
      RETURN_IF_ERROR(CheckSize(s.size()));
      return Value::String(std::move(s));
    }
    if (a.is_undefined()) return UndefinedError(a, e.offset);
    if (b.is_undefined()) return UndefinedError(b, e.offset);
    const std::string& op = e.name;
    if (op == "+" && a.is_string() && b.is_string()) {
      RETURN_IF_ERROR(CheckSize(a.str().size() + b.str().size()));
      return Value::String(a.str() + b.str());
    }
    if (op == "+" && a.is_list() && b.is_list()) {
      ValueList items = a.list();
      items.insert(items.end(), b.list().begin(), b.list().end());
      return Value::List(std::move(items));
    }
    if (op == "*" && (a.is_string() || b.is_string()) && (a.is_int() || b.is_int())) {
      const std::string& s = a.is_string() ? a.str() : b.str();
      const int64_t times = a.is_int() ? a.int_value() : b.int_value();
      if (times > 0) RETURN_IF_ERROR(CheckSize(s.size() * static_cast<size_t>(times)));
      std::string out;
      for (int64_t i = 0; i < times; ++i) out += s;
      return Value::String(std::move(out));
    }
    if (!a.is_number() || !b.is_number()) {
      if (op == "+" && a.is_string()) {
        return Fail(e.offset, Cat("can only concatenate str (not \"", b.TypeName(), "\") to str"));
      }
      return Fail(e.offset, Cat("unsupported operand type(s) for ", op, ": '", a.TypeName(),
                                "' and '", b.TypeName(), "'"));
    }
    const bool ints = !a.is_float() && !b.is_float();
    if (op == "/" || !ints) {
      const double x = a.as_double(), y = b.as_double();
      if ((op == "/" || op == "//" || op == "%") && y == 0)
        return Fail(e.offset, "division by zero");
      if (op == "+") return Value::Float(x + y);
      if (op == "-") return Value::Float(x - y);
      if (op == "*") return Value::Float(x * y);
      if (op == "/") return Value::Float(x / y);
      if (op == "//") return Value::Float(std::floor(x / y));
      if (op == "%") {
        double r = std::fmod(x, y);
        if (r != 0 && ((r < 0) != (y < 0))) r += y;
        return Value::Float(r);
      }
      return Value::Float(std::pow(x, y));
    }
    const int64_t x = a.int_value(), y = b.int_value();
    int64_t r = 0;
    bool overflow = false;
    if (op == "+") {
      overflow = __builtin_add_overflow(x, y, &r);
    } else if (op == "-") {
      overflow = __builtin_sub_overflow(x, y, &r);
    } else if (op == "*") {
      overflow = __builtin_mul_overflow(x, y, &r);
    } else if (op == "//" || op == "%") {
      if (y == 0) return Fail(e.offset, "integer division or modulo by zero");
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {
        --q;
        m += y;
      }
      r = op == "//" ? q : m;
    } else {  // **
      if (y < 0) return Value::Float(std::pow(static_cast<double>(x), static_cast<double>(y)));
      if (x == 0 || x == 1) {
        r = y == 0 ? 1 : x;
      } else if (x == -1) {
        r = y % 2 == 0 ? 1 : -1;
      } else {  // |x| >= 2 overflows within 63 steps, so this loop is short
        r = 1;
        for (int64_t i = 0; i < y && !overflow; ++i) overflow = __builtin_mul_overflow(r, x, &r);
      }
    }
    if (overflow) return Fail(e.offset, "integer overflow");
    return Value::Int(r);
  }

  std::string_view source_;
  const EvalOptions& options_;
  std::vector<Scope> scopes_;
  std::string out_;
  int64_t iterations_ = 0;
  size_t frame_base_ = 0;  // first scope of the innermost macro frame; 0 outside macros
  int macro_depth_ = 0;
  bool raised_ = false;  // raise_exception's message travels unchanged
};

}  // namespace

absl::StatusOr<std::string> Evaluate(const Body& body, std::string_view source,
                                     const Value& context, const EvalOptions& options) {
  return Evaluator(source, context, options).Run(body);
}

}  // namespace expertmesh::chat
