// Python str operations over UTF-8: whitespace per str.isspace, case mapping through utf8proc.
#ifndef EXPERTMESH_MODEL_CHAT_STRINGS_H_
#define EXPERTMESH_MODEL_CHAT_STRINGS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace expertmesh::chat {

// Decodes UTF-8 leniently (invalid bytes become U+FFFD); template values come from validated JSON.
std::vector<uint32_t> DecodeUtf8(std::string_view s);
std::string EncodeUtf8(const std::vector<uint32_t>& cps);

bool IsPythonSpace(uint32_t cp);
// str.strip/lstrip/rstrip. `chars` null means whitespace.
std::string PyStrip(std::string_view s, const std::string* chars, bool left, bool right);
// str.split(sep, maxsplit); null sep splits on whitespace runs.
std::vector<std::string> PySplit(std::string_view s, const std::string* sep, int64_t maxsplit);
std::string PyUpper(std::string_view s);
std::string PyLower(std::string_view s);
std::string PyTitle(std::string_view s);
std::string PyCapitalize(std::string_view s);
// str.replace(old, new, count); count < 0 replaces all.
std::string PyReplace(std::string_view s, std::string_view from, std::string_view to,
                      int64_t count);

}  // namespace expertmesh::chat

#endif  // EXPERTMESH_MODEL_CHAT_STRINGS_H_
