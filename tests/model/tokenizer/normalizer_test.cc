// The NFC quick check must never claim "unchanged" for text that NFC changes.
#include <utf8proc.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/tokenizer/normalizer.h"
#include "model/tokenizer/utf8.h"

namespace expertmesh::tokenizer {
namespace {

std::string Nfc(const std::string& s) {
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(
      reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()),
      &out, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  EXPECT_GE(n, 0);
  std::string result(reinterpret_cast<const char*>(out), n < 0 ? 0 : static_cast<size_t>(n));
  std::free(out);
  return result;
}

TEST(NfcQuickCheckTest, InertCodePointsAreUnchangedAloneAndInPairs) {
  std::vector<char32_t> inert;
  for (char32_t c = 0x80; c < 0x110000; ++c) {
    if (c >= 0xD800 && c <= 0xDFFF) continue;
    std::string s;
    AppendUtf8(c, &s);
    if (!NfcUnchanged(s)) continue;
    inert.push_back(c);
    ASSERT_EQ(Nfc(s), s) << "U+" << std::hex << static_cast<uint32_t>(c);
  }
  // Most of Unicode is inert, including Hangul syllables and CJK ideographs.
  EXPECT_GT(inert.size(), 200000u);
  std::string hangul;
  AppendUtf8(0xAC00, &hangul);
  EXPECT_TRUE(NfcUnchanged(hangul));
  // A syllable followed by a trailing jamo composes, so jamo are never inert.
  std::string lv_t = hangul;
  AppendUtf8(0x11A8, &lv_t);
  EXPECT_FALSE(NfcUnchanged(lv_t));
  EXPECT_NE(Nfc(lv_t), lv_t);
  EXPECT_FALSE(NfcUnchanged("e\xCC\x81"));

  std::mt19937 rng(11);
  for (int i = 0; i < 200000; ++i) {
    std::string s;
    AppendUtf8(inert[rng() % inert.size()], &s);
    AppendUtf8(inert[rng() % inert.size()], &s);
    ASSERT_TRUE(NfcUnchanged(s));
    ASSERT_EQ(Nfc(s), s);
  }
}

TEST(NfcNormalizerTest, RegionNormalizationEqualsWholeText) {
  auto nfc = NormalizerFromJson(nlohmann::json{{"type", "NFC"}});
  ASSERT_TRUE(nfc.ok()) << nfc.status();
  // Starters, combining marks, Hangul syllables and jamo, kana and voicing marks, singletons.
  const std::vector<char32_t> pieces = {'a',     'e',    'A',    ' ',    '<',    0x0338, 0x0301,
                                        0x0308,  0x0323, 0x00EA, 0x00E9, 0xAC00, 0xAC01, 0x1100,
                                        0x1161,  0x11A8, 0x304B, 0x3099, 0x212B, 0x2126, 0x4E2D,
                                        0x1F600, 0xFE0F, 0x0915, 0x093C, 0x0E01, 0x0E33, 0x05D0};
  std::mt19937 rng(5);
  for (int trial = 0; trial < 20000; ++trial) {
    std::string text;
    const int n = static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i) AppendUtf8(pieces[rng() % pieces.size()], &text);
    std::string normalized = text;
    ASSERT_TRUE((*nfc)->Normalize(&normalized).ok());
    ASSERT_EQ(normalized, Nfc(text)) << text;
  }
}

}  // namespace
}  // namespace expertmesh::tokenizer
