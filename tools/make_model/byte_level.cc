#include "tools/make_model/byte_level.h"

#include <cstdint>

namespace expertmesh::make_model {
namespace {

std::string CodePointToUtf8(uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else {  // every code point here is below U+0800
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
  return out;
}

std::array<std::string, 256> BuildAlphabet() {
  std::array<std::string, 256> alphabet;
  // Bytes that are printable stay themselves: '!'..'~', '¡'..'¬', '®'..'ÿ'.
  auto printable = [](int b) {
    return (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  };
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    alphabet[b] = CodePointToUtf8(printable(b) ? static_cast<uint32_t>(b) : next++);
  }
  return alphabet;
}

}  // namespace

const std::array<std::string, 256>& ByteLevelAlphabet() {
  static const std::array<std::string, 256> alphabet = BuildAlphabet();
  return alphabet;
}

std::string ByteLevelEncode(std::string_view bytes) {
  const auto& alphabet = ByteLevelAlphabet();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) out += alphabet[c];
  return out;
}

}  // namespace expertmesh::make_model
