#include "model/chat/parser.h"

#include <algorithm>
#include <initializer_list>
#include <string>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "model/chat/str_cat.h"

namespace expertmesh::chat {
namespace {

constexpr int kMaxNesting = 200;  // expression and statement nesting, bounds parser recursion

class Parser {
 public:
  explicit Parser(const LexResult& lexed) : lexed_(lexed) {}

  absl::StatusOr<Body> ParseTemplate() {
    std::string found;
    ASSIGN_OR_RETURN(Body body, ParseBody({}, &found));
    return body;
  }

 private:
  // ---- token helpers ----
  const Token& Peek(size_t ahead = 0) const {
    const size_t i = std::min(pos_ + ahead, lexed_.tokens.size() - 1);
    return lexed_.tokens[i];
  }
  const Token& Next() {
    const Token& t = Peek();
    if (pos_ < lexed_.tokens.size() - 1) ++pos_;
    return t;
  }
  bool IsOp(std::string_view op, size_t ahead = 0) const {
    return Peek(ahead).kind == TokenKind::kOp && Peek(ahead).text == op;
  }
  bool IsName(std::string_view name, size_t ahead = 0) const {
    return Peek(ahead).kind == TokenKind::kName && Peek(ahead).text == name;
  }
  bool SkipOp(std::string_view op) {
    if (!IsOp(op)) return false;
    Next();
    return true;
  }
  bool SkipName(std::string_view name) {
    if (!IsName(name)) return false;
    Next();
    return true;
  }
  static std::string Describe(const Token& t) {
    switch (t.kind) {
      case TokenKind::kText:
        return "template text";
      case TokenKind::kVarBegin:
        return "'{{'";
      case TokenKind::kVarEnd:
        return "'}}'";
      case TokenKind::kBlockBegin:
        return "'{%'";
      case TokenKind::kBlockEnd:
        return "'%}'";
      case TokenKind::kEof:
        return "end of template";
      case TokenKind::kString:
        return "string literal";
      default:
        return Cat("'", t.text, "'");
    }
  }
  absl::Status ErrorAt(const Token& t, std::string_view message) const {
    return absl::InvalidArgumentError(Cat("chat template syntax error at ",
                                          DescribePosition(lexed_.source, t.offset), ": ",
                                          message));
  }
  absl::Status Unexpected(std::string_view expected) const {
    return ErrorAt(Peek(), Cat("expected ", expected, ", got ", Describe(Peek())));
  }
  absl::Status ExpectOp(std::string_view op) {
    if (!SkipOp(op)) return Unexpected(Cat("'", op, "'"));
    return absl::OkStatus();
  }
  absl::Status ExpectBlockEnd() {
    if (Peek().kind != TokenKind::kBlockEnd) return Unexpected("'%}'");
    Next();
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> ExpectName() {
    if (Peek().kind != TokenKind::kName) return Unexpected("a name");
    return Next().text;
  }
  ExprPtr MakeExpr(ExprKind kind, size_t offset) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->offset = offset;
    return e;
  }

  // RAII depth guard.
  struct Nest {
    explicit Nest(int* depth) : depth_(depth) { ++*depth_; }
    ~Nest() { --*depth_; }
    int* depth_;
  };
  absl::Status CheckDepth() const {
    if (depth_ > kMaxNesting) return ErrorAt(Peek(), "template nested too deeply");
    return absl::OkStatus();
  }

  // ---- statements ----
  // Parses nodes until a {% name %} with a name in `terminators` (consumed up to the name; the
  // caller parses the rest of that tag) or the end of the template.
  absl::StatusOr<Body> ParseBody(std::initializer_list<std::string_view> terminators,
                                 std::string* found) {
    Nest nest(&depth_);
    RETURN_IF_ERROR(CheckDepth());
    Body body;
    while (true) {
      const Token& t = Peek();
      if (t.kind == TokenKind::kEof) {
        if (terminators.size() == 0) return body;
        return ErrorAt(
            t, Cat("unexpected end of template, expected '{% ", *(terminators.end() - 1), " %}'"));
      }
      if (t.kind == TokenKind::kText) {
        auto node = std::make_unique<Node>();
        node->kind = NodeKind::kText;
        node->offset = t.offset;
        node->text = t.text;
        body.push_back(std::move(node));
        Next();
        continue;
      }
      if (t.kind == TokenKind::kVarBegin) {
        Next();
        auto node = std::make_unique<Node>();
        node->kind = NodeKind::kOutput;
        node->offset = t.offset;
        ASSIGN_OR_RETURN(node->expr, ParseExpression());
        if (Peek().kind != TokenKind::kVarEnd) return Unexpected("'}}'");
        Next();
        body.push_back(std::move(node));
        continue;
      }
      if (t.kind != TokenKind::kBlockBegin) return Unexpected("template text or a tag");
      Next();
      const Token& name = Peek();
      if (name.kind != TokenKind::kName) return Unexpected("a statement name");
      if (std::find(terminators.begin(), terminators.end(), name.text) != terminators.end()) {
        *found = Next().text;
        return body;
      }
      ASSIGN_OR_RETURN(NodePtr node, ParseStatement());
      body.push_back(std::move(node));
    }
  }

  absl::StatusOr<NodePtr> ParseStatement() {
    const Token& keyword = Next();
    auto node = std::make_unique<Node>();
    node->offset = keyword.offset;
    std::string found;
    if (keyword.text == "if") {
      node->kind = NodeKind::kIf;
      while (true) {
        IfBranch branch;
        ASSIGN_OR_RETURN(branch.condition, ParseExpression());
        RETURN_IF_ERROR(ExpectBlockEnd());
        ASSIGN_OR_RETURN(branch.body, ParseBody({"elif", "else", "endif"}, &found));
        node->branches.push_back(std::move(branch));
        if (found != "elif") break;
      }
      if (found == "else") {
        RETURN_IF_ERROR(ExpectBlockEnd());
        ASSIGN_OR_RETURN(node->else_body, ParseBody({"endif"}, &found));
      }
      RETURN_IF_ERROR(ExpectBlockEnd());
    } else if (keyword.text == "for") {
      node->kind = NodeKind::kFor;
      const bool parens = SkipOp("(");
      do {
        ASSIGN_OR_RETURN(std::string target, ExpectName());
        node->targets.push_back(std::move(target));
      } while (SkipOp(","));
      if (parens) RETURN_IF_ERROR(ExpectOp(")"));
      if (!SkipName("in")) return Unexpected("'in'");
      ASSIGN_OR_RETURN(node->expr, ParseTupleOrExpression(/*with_condexpr=*/false));
      if (SkipName("if")) {
        ASSIGN_OR_RETURN(node->filter, ParseExpression());
      }
      if (IsName("recursive")) return ErrorAt(Peek(), "recursive loops are not supported");
      RETURN_IF_ERROR(ExpectBlockEnd());
      ASSIGN_OR_RETURN(node->body, ParseBody({"else", "endfor"}, &found));
      if (found == "else") {
        RETURN_IF_ERROR(ExpectBlockEnd());
        ASSIGN_OR_RETURN(node->else_body, ParseBody({"endfor"}, &found));
      }
      RETURN_IF_ERROR(ExpectBlockEnd());
    } else if (keyword.text == "set") {
      ASSIGN_OR_RETURN(std::string target, ExpectName());
      node->targets.push_back(std::move(target));
      if (SkipOp(".")) {
        ASSIGN_OR_RETURN(node->attr, ExpectName());
      } else {
        while (SkipOp(",")) {
          ASSIGN_OR_RETURN(std::string more, ExpectName());
          node->targets.push_back(std::move(more));
        }
      }
      if (SkipOp("=")) {
        node->kind = NodeKind::kSet;
        ASSIGN_OR_RETURN(node->expr, ParseTupleOrExpression(/*with_condexpr=*/true));
        RETURN_IF_ERROR(ExpectBlockEnd());
      } else {
        if (node->targets.size() != 1 || !node->attr.empty()) {
          return Unexpected("'=' (a block set takes a single plain name)");
        }
        node->kind = NodeKind::kSetBlock;
        RETURN_IF_ERROR(ExpectBlockEnd());
        ASSIGN_OR_RETURN(node->body, ParseBody({"endset"}, &found));
        RETURN_IF_ERROR(ExpectBlockEnd());
      }
    } else if (keyword.text == "macro") {
      node->kind = NodeKind::kMacro;
      ASSIGN_OR_RETURN(node->attr, ExpectName());
      RETURN_IF_ERROR(ParseSignature(node.get()));
      RETURN_IF_ERROR(ExpectBlockEnd());
      ASSIGN_OR_RETURN(node->body, ParseBody({"endmacro"}, &found));
      RETURN_IF_ERROR(ExpectBlockEnd());
    } else if (keyword.text == "call") {
      node->kind = NodeKind::kCallBlock;
      if (IsOp("(")) RETURN_IF_ERROR(ParseSignature(node.get()));
      ASSIGN_OR_RETURN(node->expr, ParseExpression());
      if (node->expr->kind != ExprKind::kCall)
        return ErrorAt(keyword, "expected a call after 'call'");
      RETURN_IF_ERROR(ExpectBlockEnd());
      ASSIGN_OR_RETURN(node->body, ParseBody({"endcall"}, &found));
      RETURN_IF_ERROR(ExpectBlockEnd());
    } else if (keyword.text == "generation") {
      // transformers registers this tag (AssistantTracker) to find assistant tokens; rendering
      // prints the body as it stands.
      node->kind = NodeKind::kGeneration;
      RETURN_IF_ERROR(ExpectBlockEnd());
      ASSIGN_OR_RETURN(node->body, ParseBody({"endgeneration"}, &found));
      RETURN_IF_ERROR(ExpectBlockEnd());
    } else if (keyword.text == "break" || keyword.text == "continue") {
      node->kind = keyword.text == "break" ? NodeKind::kBreak : NodeKind::kContinue;
      RETURN_IF_ERROR(ExpectBlockEnd());
    } else {
      return ErrorAt(keyword, Cat("unknown or unsupported statement '", keyword.text, "'"));
    }
    return node;
  }

  // "(a, b=default, ...)" of a macro or caller into node->targets and node->defaults.
  absl::Status ParseSignature(Node* node) {
    RETURN_IF_ERROR(ExpectOp("("));
    while (!IsOp(")")) {
      const Token& at = Peek();
      ASSIGN_OR_RETURN(std::string param, ExpectName());
      if (std::find(node->targets.begin(), node->targets.end(), param) != node->targets.end()) {
        return ErrorAt(at, Cat("duplicate argument '", param, "'"));
      }
      ExprPtr default_value;
      if (SkipOp("=")) {
        ASSIGN_OR_RETURN(default_value, ParseExpression());
      } else if (!node->defaults.empty() && node->defaults.back()) {
        return ErrorAt(at, "non-default argument follows default argument");
      }
      node->targets.push_back(std::move(param));
      node->defaults.push_back(std::move(default_value));
      if (!SkipOp(",")) break;
    }
    return ExpectOp(")");
  }

  // ---- expressions ----
  absl::StatusOr<ExprPtr> ParseTupleOrExpression(bool with_condexpr) {
    const size_t offset = Peek().offset;
    ASSIGN_OR_RETURN(ExprPtr first, ParseExpression(with_condexpr));
    if (!IsOp(",")) return first;
    ExprPtr tuple = MakeExpr(ExprKind::kTuple, offset);
    tuple->children.push_back(std::move(first));
    while (SkipOp(",")) {
      if (Peek().kind == TokenKind::kBlockEnd || IsName("if")) break;
      ASSIGN_OR_RETURN(ExprPtr item, ParseExpression(with_condexpr));
      tuple->children.push_back(std::move(item));
    }
    return tuple;
  }

  absl::StatusOr<ExprPtr> ParseExpression(bool with_condexpr = true) {
    Nest nest(&depth_);
    RETURN_IF_ERROR(CheckDepth());
    ASSIGN_OR_RETURN(ExprPtr expr, ParseOr());
    while (with_condexpr && IsName("if")) {
      const size_t offset = Next().offset;
      ExprPtr cond = MakeExpr(ExprKind::kCond, offset);
      ASSIGN_OR_RETURN(ExprPtr test, ParseOr());
      ExprPtr otherwise;
      if (SkipName("else")) {
        ASSIGN_OR_RETURN(otherwise, ParseExpression());
      }
      cond->children.push_back(std::move(test));
      cond->children.push_back(std::move(expr));
      cond->children.push_back(std::move(otherwise));
      expr = std::move(cond);
    }
    return expr;
  }

  absl::StatusOr<ExprPtr> Binary(std::string op, ExprPtr left, ExprPtr right, size_t offset) {
    ExprPtr e = MakeExpr(ExprKind::kBinary, offset);
    e->name = std::move(op);
    e->children.push_back(std::move(left));
    e->children.push_back(std::move(right));
    return e;
  }

  absl::StatusOr<ExprPtr> ParseOr() {
    ASSIGN_OR_RETURN(ExprPtr left, ParseAnd());
    while (IsName("or")) {
      const size_t offset = Next().offset;
      ASSIGN_OR_RETURN(ExprPtr right, ParseAnd());
      ASSIGN_OR_RETURN(left, Binary("or", std::move(left), std::move(right), offset));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseAnd() {
    ASSIGN_OR_RETURN(ExprPtr left, ParseNot());
    while (IsName("and")) {
      const size_t offset = Next().offset;
      ASSIGN_OR_RETURN(ExprPtr right, ParseNot());
      ASSIGN_OR_RETURN(left, Binary("and", std::move(left), std::move(right), offset));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseNot() {
    if (IsName("not")) {
      Nest nest(&depth_);
      RETURN_IF_ERROR(CheckDepth());
      ExprPtr e = MakeExpr(ExprKind::kUnary, Next().offset);
      e->name = "not";
      ASSIGN_OR_RETURN(ExprPtr operand, ParseNot());
      e->children.push_back(std::move(operand));
      return e;
    }
    return ParseCompare();
  }

  absl::StatusOr<ExprPtr> ParseCompare() {
    const size_t offset = Peek().offset;
    ASSIGN_OR_RETURN(ExprPtr first, ParseConcat());
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (Peek().kind == TokenKind::kOp &&
          (IsOp("==") || IsOp("!=") || IsOp("<") || IsOp(">") || IsOp("<=") || IsOp(">="))) {
        op = Next().text;
      } else if (IsName("in")) {
        Next();
        op = "in";
      } else if (IsName("not") && IsName("in", 1)) {
        Next();
        Next();
        op = "not in";
      } else {
        break;
      }
      if (!cmp) {
        cmp = MakeExpr(ExprKind::kCompare, offset);
        cmp->children.push_back(std::move(first));
      }
      ASSIGN_OR_RETURN(ExprPtr right, ParseConcat());
      cmp->ops.push_back(std::move(op));
      cmp->children.push_back(std::move(right));
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  absl::StatusOr<ExprPtr> ParseConcat() {
    ASSIGN_OR_RETURN(ExprPtr left, ParseMath1());
    while (IsOp("~")) {
      const size_t offset = Next().offset;
      ASSIGN_OR_RETURN(ExprPtr right, ParseMath1());
      ASSIGN_OR_RETURN(left, Binary("~", std::move(left), std::move(right), offset));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseMath1() {
    ASSIGN_OR_RETURN(ExprPtr left, ParseMath2());
    while (IsOp("+") || IsOp("-")) {
      const Token& op = Next();
      ASSIGN_OR_RETURN(ExprPtr right, ParseMath2());
      ASSIGN_OR_RETURN(left, Binary(op.text, std::move(left), std::move(right), op.offset));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseMath2() {
    ASSIGN_OR_RETURN(ExprPtr left, ParsePow());
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      const Token& op = Next();
      ASSIGN_OR_RETURN(ExprPtr right, ParsePow());
      ASSIGN_OR_RETURN(left, Binary(op.text, std::move(left), std::move(right), op.offset));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParsePow() {
    ASSIGN_OR_RETURN(ExprPtr left, ParseUnary(true));
    while (IsOp("**")) {
      const size_t offset = Next().offset;
      ASSIGN_OR_RETURN(ExprPtr right, ParseUnary(true));
      ASSIGN_OR_RETURN(left, Binary("**", std::move(left), std::move(right), offset));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter) {
    Nest nest(&depth_);
    RETURN_IF_ERROR(CheckDepth());
    ExprPtr node;
    if (IsOp("-") || IsOp("+")) {
      const Token& op = Next();
      node = MakeExpr(ExprKind::kUnary, op.offset);
      node->name = op.text;
      ASSIGN_OR_RETURN(ExprPtr operand, ParseUnary(false));
      node->children.push_back(std::move(operand));
    } else {
      ASSIGN_OR_RETURN(node, ParsePrimary());
    }
    ASSIGN_OR_RETURN(node, ParsePostfix(std::move(node)));
    if (with_filter) {
      ASSIGN_OR_RETURN(node, ParseFilterExpr(std::move(node)));
    }
    return node;
  }

  absl::StatusOr<ExprPtr> ParsePrimary() {
    const Token& t = Peek();
    switch (t.kind) {
      case TokenKind::kName: {
        Next();
        ExprPtr e = MakeExpr(ExprKind::kLiteral, t.offset);
        if (t.text == "true" || t.text == "True") {
          e->literal = Value::Bool(true);
        } else if (t.text == "false" || t.text == "False") {
          e->literal = Value::Bool(false);
        } else if (t.text == "none" || t.text == "None") {
          e->literal = Value::None();
        } else {
          e->kind = ExprKind::kName;
          e->name = t.text;
        }
        return e;
      }
      case TokenKind::kString: {
        std::string value;
        while (Peek().kind == TokenKind::kString) value += Next().text;  // adjacent literals
        ExprPtr e = MakeExpr(ExprKind::kLiteral, t.offset);
        e->literal = Value::String(std::move(value));
        return e;
      }
      case TokenKind::kInt:
      case TokenKind::kFloat: {
        Next();
        ExprPtr e = MakeExpr(ExprKind::kLiteral, t.offset);
        e->literal =
            t.kind == TokenKind::kInt ? Value::Int(t.int_value) : Value::Float(t.float_value);
        return e;
      }
      default:
        break;
    }
    if (SkipOp("(")) {
      if (SkipOp(")")) return MakeExpr(ExprKind::kTuple, t.offset);
      ASSIGN_OR_RETURN(ExprPtr inner, ParseExpression());
      if (IsOp(",")) {
        ExprPtr tuple = MakeExpr(ExprKind::kTuple, t.offset);
        tuple->children.push_back(std::move(inner));
        while (SkipOp(",")) {
          if (IsOp(")")) break;
          ASSIGN_OR_RETURN(ExprPtr item, ParseExpression());
          tuple->children.push_back(std::move(item));
        }
        inner = std::move(tuple);
      }
      RETURN_IF_ERROR(ExpectOp(")"));
      return inner;
    }
    if (SkipOp("[")) {
      ExprPtr list = MakeExpr(ExprKind::kList, t.offset);
      while (!IsOp("]")) {
        ASSIGN_OR_RETURN(ExprPtr item, ParseExpression());
        list->children.push_back(std::move(item));
        if (!SkipOp(",")) break;
      }
      RETURN_IF_ERROR(ExpectOp("]"));
      return list;
    }
    if (SkipOp("{")) {
      ExprPtr dict = MakeExpr(ExprKind::kDict, t.offset);
      while (!IsOp("}")) {
        ASSIGN_OR_RETURN(ExprPtr key, ParseExpression());
        RETURN_IF_ERROR(ExpectOp(":"));
        ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
        dict->children.push_back(std::move(key));
        dict->children.push_back(std::move(value));
        if (!SkipOp(",")) break;
      }
      RETURN_IF_ERROR(ExpectOp("}"));
      return dict;
    }
    return Unexpected("an expression");
  }

  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr node) {
    while (true) {
      const Token& t = Peek();
      if (IsOp(".")) {
        Next();
        if (Peek().kind == TokenKind::kInt) {
          ExprPtr item = MakeExpr(ExprKind::kGetItem, t.offset);
          ExprPtr index = MakeExpr(ExprKind::kLiteral, Peek().offset);
          index->literal = Value::Int(Next().int_value);
          item->children.push_back(std::move(node));
          item->children.push_back(std::move(index));
          node = std::move(item);
          continue;
        }
        ExprPtr attr = MakeExpr(ExprKind::kGetAttr, t.offset);
        ASSIGN_OR_RETURN(attr->name, ExpectName());
        attr->children.push_back(std::move(node));
        node = std::move(attr);
      } else if (IsOp("[")) {
        Next();
        ASSIGN_OR_RETURN(node, ParseSubscript(std::move(node), t.offset));
      } else if (IsOp("(")) {
        ASSIGN_OR_RETURN(node, ParseCall(std::move(node), ExprKind::kCall, "", t.offset));
      } else {
        return node;
      }
    }
  }

  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr target, size_t offset) {
    ExprPtr parts[3];
    bool is_slice = false;
    if (!IsOp(":")) {
      ASSIGN_OR_RETURN(parts[0], ParseExpression());
    }
    if (SkipOp(":")) {
      is_slice = true;
      if (!IsOp(":") && !IsOp("]")) {
        ASSIGN_OR_RETURN(parts[1], ParseExpression());
      }
      if (SkipOp(":") && !IsOp("]")) {
        ASSIGN_OR_RETURN(parts[2], ParseExpression());
      }
    }
    RETURN_IF_ERROR(ExpectOp("]"));
    ExprPtr e = MakeExpr(is_slice ? ExprKind::kSlice : ExprKind::kGetItem, offset);
    e->children.push_back(std::move(target));
    e->children.push_back(std::move(parts[0]));
    if (is_slice) {
      e->children.push_back(std::move(parts[1]));
      e->children.push_back(std::move(parts[2]));
    }
    return e;
  }

  // Parses "(args, name=kwargs)" into an expression of `kind` whose children[0] is `target`.
  absl::StatusOr<ExprPtr> ParseCall(ExprPtr target, ExprKind kind, std::string name,
                                    size_t offset) {
    ExprPtr e = MakeExpr(kind, offset);
    e->name = std::move(name);
    e->children.push_back(std::move(target));
    RETURN_IF_ERROR(ExpectOp("("));
    while (!IsOp(")")) {
      if (Peek().kind == TokenKind::kName && IsOp("=", 1)) {
        std::string key = Next().text;
        Next();
        ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
        e->kwargs.emplace_back(std::move(key), std::move(value));
      } else {
        if (!e->kwargs.empty())
          return ErrorAt(Peek(), "positional argument after keyword argument");
        ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
        e->children.push_back(std::move(value));
      }
      if (!SkipOp(",")) break;
    }
    RETURN_IF_ERROR(ExpectOp(")"));
    return e;
  }

  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node) {
    while (true) {
      if (IsOp("|")) {
        const size_t offset = Next().offset;
        ASSIGN_OR_RETURN(std::string name, ExpectName());
        if (IsOp("(")) {
          ASSIGN_OR_RETURN(node, ParseCall(std::move(node), ExprKind::kFilter, name, offset));
        } else {
          ExprPtr f = MakeExpr(ExprKind::kFilter, offset);
          f->name = std::move(name);
          f->children.push_back(std::move(node));
          node = std::move(f);
        }
      } else if (IsName("is")) {
        const size_t offset = Next().offset;
        const bool negated = SkipName("not");
        ASSIGN_OR_RETURN(std::string name, ExpectName());
        ExprPtr test;
        if (IsOp("(")) {
          ASSIGN_OR_RETURN(test, ParseCall(std::move(node), ExprKind::kTest, name, offset));
        } else {
          test = MakeExpr(ExprKind::kTest, offset);
          test->name = std::move(name);
          test->children.push_back(std::move(node));
          const Token& t = Peek();
          const bool arg_follows = t.kind == TokenKind::kString || t.kind == TokenKind::kInt ||
                                   t.kind == TokenKind::kFloat || IsOp("[") || IsOp("{") ||
                                   (t.kind == TokenKind::kName && t.text != "else" &&
                                    t.text != "or" && t.text != "and" && t.text != "if" &&
                                    t.text != "is" && t.text != "in" && t.text != "not");
          if (arg_follows) {
            ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary());
            ASSIGN_OR_RETURN(arg, ParsePostfix(std::move(arg)));
            test->children.push_back(std::move(arg));
          }
        }
        test->negated = negated;
        node = std::move(test);
      } else if (IsOp("(")) {
        ASSIGN_OR_RETURN(node, ParseCall(std::move(node), ExprKind::kCall, "", Peek().offset));
      } else {
        return node;
      }
    }
  }

  const LexResult& lexed_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

absl::StatusOr<Body> Parse(const LexResult& lexed) { return Parser(lexed).ParseTemplate(); }

}  // namespace expertmesh::chat
