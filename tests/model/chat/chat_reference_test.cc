// Parity with transformers: renders every case of tests/model/chat/data/reference.json (made by
// tools/chat/make_reference.py with transformers' render_jinja_template, the code behind
// apply_chat_template) and requires byte-exact output, or an error where transformers raised one.
#include <filesystem>
#include <map>
#include <string>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "model/chat/chat_template.h"
#include "nlohmann/json.hpp"

namespace expertmesh::chat {
namespace {

const std::string kDataDir = std::string(EXPERTMESH_SOURCE_DIR) + "/tests/model/chat/data/";

// The file's text (an absent file fails the test loudly, naming it).
std::string ReadFile(const std::string& path) { return ReadFileToString(path).value(); }

TEST(ChatReferenceTest, MatchesTransformersOnEveryCase) {
  const auto reference = nlohmann::ordered_json::parse(ReadFile(kDataDir + "reference.json"));
  std::map<std::string, ChatTemplate> templates;
  std::tm now{};
  now.tm_year = 2025 - 1900;
  now.tm_mon = 2;
  now.tm_mday = 7;
  now.tm_hour = 14;
  now.tm_min = 5;
  now.tm_sec = 9;
  int rendered = 0, errors = 0;
  std::map<std::string, int> rendered_by_template;
  ASSERT_GT(reference["cases"].size(), 200u);
  for (const auto& c : reference["cases"]) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    const std::string file = c["template"];
    if (!templates.count(file)) {
      auto parsed = ChatTemplate::Parse(ReadFile(kDataDir + "templates/" + file));
      ASSERT_TRUE(parsed.ok()) << parsed.status();
      templates.emplace(file, *parsed);
    }
    ChatRenderOptions options;
    options.add_generation_prompt = c["add_generation_prompt"];
    options.bos_token = c["bos_token"];
    options.eos_token = c["eos_token"];
    if (!c["tools"].is_null()) options.tools = c["tools"];
    options.extra_kwargs = c["kwargs"];
    options.now = now;
    auto result = RenderChat(templates.at(file), c["messages"], options);
    if (c.contains("expected")) {
      ASSERT_TRUE(result.ok()) << result.status();
      EXPECT_EQ(*result, c["expected"].get<std::string>());
      ++rendered;
      ++rendered_by_template[file];
    } else if (c.contains("raised")) {
      ASSERT_FALSE(result.ok()) << "rendered: " << *result;
      EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_EQ(std::string(result.status().message()), c["raised"].get<std::string>());
      ++errors;
    } else {
      EXPECT_FALSE(result.ok()) << "transformers failed with " << c["failed"] << " but we rendered "
                                << *result;
      ++errors;
    }
  }
  EXPECT_GT(rendered, 400);
  EXPECT_GT(errors, 10);
  // Every committed template is covered, and renders most conversations (tools included) rather
  // than only failing the same way transformers does.
  for (const auto& entry : std::filesystem::directory_iterator(kDataDir + "templates")) {
    if (entry.path().extension() != ".jinja") continue;
    const std::string file = entry.path().filename();
    EXPECT_GE(rendered_by_template[file], 20) << file;
  }
}

}  // namespace
}  // namespace expertmesh::chat
