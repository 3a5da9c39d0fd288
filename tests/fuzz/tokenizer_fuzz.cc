// libFuzzer target for the tokenizer: arbitrary bytes go through Encode, Decode and the streaming
// detokenizer of two small in-memory tokenizers.
//   - Invalid UTF-8 must be rejected with INVALID_ARGUMENT (HF takes Rust strings), never crash.
//   - "exact": no normalizer and no stripping added tokens, so decode(encode(x)) == x.
//   - "rich": NFC, added tokens with lstrip/rstrip/single_word, a bos template; the output must
//     be valid UTF-8 and the streamed text must equal Decode.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model/tokenizer/byte_level.h"
#include "model/tokenizer/streaming_detokenizer.h"
#include "model/tokenizer/tokenizer.h"
#include "model/tokenizer/utf8.h"
#include "nlohmann/json.hpp"

namespace {

using expertmesh::tokenizer::ByteToChar;
using expertmesh::tokenizer::FindInvalidUtf8;
using expertmesh::tokenizer::StreamingDetokenizer;
using expertmesh::tokenizer::Tokenizer;
using json = nlohmann::json;

void Check(bool condition, const char* what) {
  if (!condition) {
    fprintf(stderr, "tokenizer_fuzz: violated: %s\n", what);
    abort();
  }
}

json BaseJson() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteToChar(static_cast<unsigned char>(b))] = b;
  // Merges over common ASCII and the bytes of Hangul / CJK so the merge loop does real work.
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"Ġ", "t"}, {"h", "e"},  {"Ġt", "he"}, {"i", "n"},   {"Ġ", "a"},      {"e", "r"},
      {"o", "n"}, {"Ġ", "Ġ"},  {"ĠĠ", "ĠĠ"}, {"Ċ", "Ċ"},   {"1", "2"},      {"12", "3"},
      {"ì", "Ŀ"}, {"ìĿ", "´"}, {"ê", "°"},   {"ê°", "Ģ"},  {"ä", "¸"},      {"ä¸", "Ń"},
      {"ð", "Ł"}, {"ðŁ", "ĺ"}, {"a", "b"},   {"ab", "ab"}, {"abab", "abab"}};
  json merge_list = json::array();
  int next_id = 256;
  for (const auto& [a, b] : merges) {
    if (!vocab.contains(a + b)) vocab[a + b] = next_id++;
    merge_list.push_back(a + " " + b);
  }
  return json{
      {"added_tokens", json::array()},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         json::array(
             {{{"type", "Split"},
               {"pattern", {{"Regex", "\\p{N}{1,3}"}}},
               {"behavior", "Isolated"}},
              {{"type", "Split"},
               {"pattern",
                {{"Regex",
                  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                  "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
               {"behavior", "Isolated"}},
              {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}}}};
}

std::unique_ptr<Tokenizer> Build(const json& j) {
  auto tok = Tokenizer::FromJson(j.dump(), "fuzz-tokenizer.json");
  Check(tok.ok(), "the fuzz tokenizer loads");
  return std::move(*tok);
}

struct Tokenizers {
  std::unique_ptr<Tokenizer> exact;
  std::unique_ptr<Tokenizer> rich;
};

const Tokenizers& GetTokenizers() {
  static const Tokenizers* t = [] {
    auto* out = new Tokenizers;
    json exact = BaseJson();
    exact["added_tokens"] = json::array({
        {{"id", 1000}, {"content", "<|im_start|>"}, {"special", true}, {"normalized", false}},
        {{"id", 1001}, {"content", "<|im_end|>"}, {"special", true}, {"normalized", false}},
        {{"id", 1002}, {"content", "<think>"}, {"special", false}, {"normalized", true}},
    });
    out->exact = Build(exact);

    json rich = BaseJson();
    rich["normalizer"] = {{"type", "NFC"}};
    rich["added_tokens"] = json::array({
        {{"id", 1000}, {"content", "<s>"}, {"special", true}, {"normalized", false}},
        {{"id", 1001},
         {"content", "<mask>"},
         {"lstrip", true},
         {"rstrip", true},
         {"normalized", false}},
        {{"id", 1002}, {"content", "word"}, {"single_word", true}, {"normalized", true}},
        {{"id", 1003}, {"content", "é"}, {"normalized", true}},
    });
    rich["post_processor"] = {{"type", "TemplateProcessing"},
                              {"single", "<s> $A"},
                              {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1000}}}}}}};
    out->rich = Build(rich);
    return out;
  }();
  return *t;
}

void CheckStreaming(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
  StreamingDetokenizer stream(tok, skip);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string piece = stream.Add(id);
    Check(FindInvalidUtf8(piece) == std::string_view::npos, "streamed piece is valid UTF-8");
    streamed += piece;
  }
  streamed += stream.Finish();
  Check(streamed == tok.Decode(ids, skip), "streamed text equals Decode");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Tokenizers& t = GetTokenizers();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const bool valid = FindInvalidUtf8(text) == std::string_view::npos;

  auto exact = t.exact->Encode(text, false);
  auto rich = t.rich->Encode(text, true);
  if (!valid) {
    Check(!exact.ok() && exact.status().code() == absl::StatusCode::kInvalidArgument,
          "invalid UTF-8 is rejected with INVALID_ARGUMENT");
    Check(!rich.ok() && rich.status().code() == absl::StatusCode::kInvalidArgument,
          "invalid UTF-8 is rejected with INVALID_ARGUMENT (rich)");
    // The input bytes as token ids: decoding arbitrary ids must be safe too.
    std::vector<int32_t> ids(data, data + size);
    CheckStreaming(*t.exact, ids, false);
    return 0;
  }
  Check(exact.ok() && rich.ok(), "valid UTF-8 encodes");
  Check(t.exact->Decode(*exact, false) == text, "decode(encode(x)) == x");
  Check(!rich->empty() && rich->front() == 1000, "the template adds <s>");
  const std::string rich_text = t.rich->Decode(*rich, true);
  Check(FindInvalidUtf8(rich_text) == std::string_view::npos, "Decode returns valid UTF-8");
  CheckStreaming(*t.exact, *exact, false);
  CheckStreaming(*t.rich, *rich, true);
  return 0;
}
