// Stop strings over streamed text. Text that might be the start of a stop string is held back
// until the following text decides it, so a client never sees a stop string or a part of it.
// Input must be whole UTF-8 characters (StreamingDetokenizer output); output then is too,
// because a held-back suffix always starts where a stop string starts, at a character.
//
// Not thread-safe: one per generated choice.
#ifndef EXPERTMESH_ROUTER_STOP_MATCHER_H_
#define EXPERTMESH_ROUTER_STOP_MATCHER_H_

#include <string>
#include <string_view>
#include <vector>

namespace expertmesh::router {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  struct Result {
    // Text safe to emit now.
    std::string text;
    // True once a stop string matched; `text` ends right before it. Later Add calls
    // return nothing.
    bool stopped = false;
    std::string matched;
  };

  // Appends `text` and returns what can be emitted. The earliest match wins; on a tie at the
  // same position the stop listed first wins.
  Result Add(std::string_view text);

  // End of generation: returns the held-back text (nothing after a match).
  std::string Flush();

  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_STOP_MATCHER_H_
