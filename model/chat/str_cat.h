// String concatenation over std::string_view. absl::StrCat cannot be used with std::string_view
// here: Debian's abseil is built with its own absl::string_view (ABSL_OPTION_USE_STD_*=0).
#ifndef EXPERTMESH_MODEL_CHAT_STR_CAT_H_
#define EXPERTMESH_MODEL_CHAT_STR_CAT_H_

#include <string>
#include <string_view>
#include <type_traits>

namespace expertmesh::chat {

inline void CatAppend(std::string& out, std::string_view s) { out.append(s); }
inline void CatAppend(std::string& out, const char* s) { out.append(s); }
inline void CatAppend(std::string& out, const std::string& s) { out.append(s); }
template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T>>>
void CatAppend(std::string& out, T v) {
  out.append(std::to_string(v));
}

template <typename... Args>
std::string Cat(const Args&... args) {
  std::string out;
  (CatAppend(out, args), ...);
  return out;
}

}  // namespace expertmesh::chat

#endif  // EXPERTMESH_MODEL_CHAT_STR_CAT_H_
