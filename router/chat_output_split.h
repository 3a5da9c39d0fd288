// A chat choice's output taken apart as it streams: reasoning first (reasoning_split.h), then
// the tool calls out of what is left (tool_calls.h). The HTTP handler runs one per choice, on
// each delta while streaming and on the whole text otherwise.
#ifndef EXPERTMESH_ROUTER_CHAT_OUTPUT_SPLIT_H_
#define EXPERTMESH_ROUTER_CHAT_OUTPUT_SPLIT_H_

#include <string>
#include <string_view>
#include <vector>

#include "nlohmann/json.hpp"
#include "router/reasoning_split.h"
#include "router/tool_calls.h"

namespace expertmesh::router {

class ChatOutputSplitter {
 public:
  // `tools` as for ToolCallSplitter (must outlive the splitter; nullptr: none).
  ChatOutputSplitter(ReasoningStart start, ToolCallFormat format,
                     const nlohmann::ordered_json* tools)
      : reasoning_(start), calls_(format, tools) {}

  struct Parts {
    std::string reasoning;
    std::string content;
    std::vector<ToolCall> calls;
  };
  // The parts of `text` that can be told apart now.
  Parts Feed(std::string_view text);
  // Whatever was held back.
  Parts Finish();
  // Feed and Finish at once: a whole output.
  Parts Split(std::string_view text);

 private:
  ReasoningSplitter reasoning_;
  ToolCallSplitter calls_;
};

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_CHAT_OUTPUT_SPLIT_H_
