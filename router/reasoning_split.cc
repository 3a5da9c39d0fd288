#include "router/reasoning_split.h"

#include <algorithm>

#include "router/partial_marker.h"

namespace expertmesh::router {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

}  // namespace

ReasoningStart ReasoningStartOf(std::string_view chat_template, std::string_view rendered_prompt) {
  if (chat_template.find(kThinkStart) == std::string_view::npos) return ReasoningStart::kNone;
  const size_t open = rendered_prompt.rfind(kThinkStart);
  if (open == std::string_view::npos) return ReasoningStart::kMaybe;
  const size_t close = rendered_prompt.rfind(kThinkEnd);
  return close == std::string_view::npos || close < open ? ReasoningStart::kInReasoning
                                                         : ReasoningStart::kMaybe;
}

ReasoningSplitter::ReasoningSplitter(ReasoningStart start)
    : state_(start == ReasoningStart::kNone          ? State::kContent
             : start == ReasoningStart::kInReasoning ? State::kReasoning
                                                     : State::kBeforeStart) {}

ReasoningSplitter::Parts ReasoningSplitter::Feed(std::string_view text) {
  Parts out;
  if (state_ == State::kContent && pending_.empty()) {
    out.content = text;
    return out;
  }
  pending_.append(text);
  Drain(out, /*final=*/false);
  return out;
}

ReasoningSplitter::Parts ReasoningSplitter::Finish() {
  Parts out;
  Drain(out, /*final=*/true);
  if (!pending_.empty()) {
    (state_ == State::kReasoning ? out.reasoning : out.content).append(pending_);
    pending_.clear();
  }
  return out;
}

void ReasoningSplitter::Drain(Parts& out, bool final) {
  for (;;) {
    switch (state_) {
      case State::kBeforeStart: {
        const size_t first =
            std::find_if_not(pending_.begin(), pending_.end(), IsSpace) - pending_.begin();
        const std::string_view rest = std::string_view(pending_).substr(first);
        if (rest.starts_with(kThinkStart)) {
          pending_.erase(0, first + kThinkStart.size());
          state_ = State::kReasoning;
          continue;
        }
        // Only whitespace, or a beginning of <think>, so far: wait for more.
        if (!final && kThinkStart.starts_with(rest)) return;
        state_ = State::kContent;
        continue;
      }
      case State::kReasoning: {
        const size_t end = pending_.find(kThinkEnd);
        if (end != std::string::npos) {
          out.reasoning.append(pending_, 0, end);
          pending_.erase(0, end + kThinkEnd.size());
          state_ = State::kAfterEnd;
          continue;
        }
        const size_t keep = final ? 0 : PartialMarkerSuffix(pending_, kThinkEnd);
        out.reasoning.append(pending_, 0, pending_.size() - keep);
        pending_.erase(0, pending_.size() - keep);
        return;
      }
      case State::kAfterEnd: {
        const size_t first =
            std::find_if_not(pending_.begin(), pending_.end(), IsSpace) - pending_.begin();
        pending_.erase(0, first);
        if (pending_.empty() && !final) return;  // more whitespace may follow
        state_ = State::kContent;
        continue;
      }
      case State::kContent:
        out.content.append(pending_);
        pending_.clear();
        return;
    }
  }
}

}  // namespace expertmesh::router
