// Streaming text splitters (reasoning_split.h, tool_calls.h) hold back the end of what they have
// seen while it could still be the start of a marker they look for.
#ifndef EXPERTMESH_ROUTER_PARTIAL_MARKER_H_
#define EXPERTMESH_ROUTER_PARTIAL_MARKER_H_

#include <algorithm>
#include <cstddef>
#include <string_view>

namespace expertmesh::router {

// The length of the longest suffix of `text` that is a proper prefix of `marker`.
inline size_t PartialMarkerSuffix(std::string_view text, std::string_view marker) {
  for (size_t len = std::min(text.size(), marker.size() - 1); len > 0; --len) {
    if (text.substr(text.size() - len) == marker.substr(0, len)) return len;
  }
  return 0;
}

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_PARTIAL_MARKER_H_
