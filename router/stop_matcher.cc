#include "router/stop_matcher.h"

#include <algorithm>

namespace expertmesh::router {

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
}

StopMatcher::Result StopMatcher::Add(std::string_view text) {
  Result result;
  if (stopped_) return result;
  held_.append(text);
  // Earliest full match anywhere in the held text (a match may span earlier calls).
  size_t best_pos = std::string::npos;
  const std::string* best = nullptr;
  for (const std::string& stop : stops_) {
    const size_t pos = held_.find(stop);
    if (pos != std::string::npos && (best == nullptr || pos < best_pos)) {
      best_pos = pos;
      best = &stop;
    }
  }
  if (best != nullptr) {
    result.text = held_.substr(0, best_pos);
    result.stopped = true;
    result.matched = *best;
    stopped_ = true;
    held_.clear();
    return result;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const std::string& stop : stops_) {
    const size_t max_len = std::min(stop.size() - 1, held_.size());
    for (size_t len = max_len; len > keep; --len) {
      if (std::string_view(held_).substr(held_.size() - len) ==
          std::string_view(stop).substr(0, len)) {
        keep = len;
        break;
      }
    }
  }
  result.text = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return result;
}

std::string StopMatcher::Flush() {
  std::string out = std::move(held_);
  held_.clear();
  return out;
}

}  // namespace expertmesh::router
