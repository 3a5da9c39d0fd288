#include "model/tokenizer/byte_level.h"

#include <cstdint>

#include "model/tokenizer/utf8.h"

namespace expertmesh::tokenizer {
namespace {

struct Tables {
  std::array<std::string, 256> byte_to_char;
  // Byte-level characters are all below U+0144, so a flat table covers the reverse map.
  std::array<int16_t, 0x200> char_to_byte;
};

const Tables& GetTables() {
  static const Tables* tables = [] {
    auto* t = new Tables;
    t->char_to_byte.fill(-1);
    // Printable Latin-1 bytes stand for themselves; the rest are shifted above U+0100 in order.
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable =
          (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const char32_t c = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + next++);
      AppendUtf8(c, &t->byte_to_char[b]);
      t->char_to_byte[c] = static_cast<int16_t>(b);
    }
    return t;
  }();
  return *tables;
}

}  // namespace

const std::string& ByteToChar(unsigned char b) { return GetTables().byte_to_char[b]; }

bool AppendByteLevelDecoded(std::string_view token, std::string* out) {
  const Tables& t = GetTables();
  const size_t old_size = out->size();
  size_t pos = 0;
  while (pos < token.size()) {
    const Utf8Step step = NextUtf8Sequence(token.substr(pos));
    int byte = -1;
    if (step.complete) {
      size_t len = 0;
      const char32_t c = DecodeUtf8At(token, pos, &len);
      if (c < t.char_to_byte.size()) byte = t.char_to_byte[c];
    }
    if (byte < 0) {
      out->resize(old_size);
      out->append(token);
      return false;
    }
    out->push_back(static_cast<char>(byte));
    pos += step.length;
  }
  return true;
}

std::string ByteLevelEncode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += ByteToChar(static_cast<unsigned char>(c));
  return out;
}

}  // namespace expertmesh::tokenizer
