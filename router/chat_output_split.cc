#include "router/chat_output_split.h"

#include <utility>

namespace expertmesh::router {
namespace {

void Append(ChatOutputSplitter::Parts& to, ToolCallSplitter::Parts from) {
  to.content += from.content;
  for (ToolCall& call : from.calls) to.calls.push_back(std::move(call));
}

}  // namespace

ChatOutputSplitter::Parts ChatOutputSplitter::Feed(std::string_view text) {
  ReasoningSplitter::Parts r = reasoning_.Feed(text);
  Parts out{.reasoning = std::move(r.reasoning)};
  Append(out, calls_.Feed(r.content));
  return out;
}

ChatOutputSplitter::Parts ChatOutputSplitter::Finish() {
  ReasoningSplitter::Parts r = reasoning_.Finish();
  Parts out{.reasoning = std::move(r.reasoning)};
  Append(out, calls_.Feed(r.content));
  Append(out, calls_.Finish());
  return out;
}

ChatOutputSplitter::Parts ChatOutputSplitter::Split(std::string_view text) {
  Parts out = Feed(text);
  Parts rest = Finish();
  out.reasoning += rest.reasoning;
  out.content += rest.content;
  for (ToolCall& call : rest.calls) out.calls.push_back(std::move(call));
  return out;
}

}  // namespace expertmesh::router
