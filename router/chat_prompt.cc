#include "router/chat_prompt.h"

#include "absl/strings/string_view.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "router/request_ids.h"

namespace expertmesh::router {
namespace {

using Json = nlohmann::ordered_json;

// Private-use characters around a placeholder: no template filter (trim, upper, lower, title)
// changes them, and the digits between them survive upper/lower too.
constexpr absl::string_view kOpen = "\xEE\x80\x80";   // U+E000
constexpr absl::string_view kClose = "\xEE\x80\x81";  // U+E001

// Decimal digits only, so that no case filter alters them; a client cannot guess them, so its
// own text never passes for a placeholder.
std::string Nonce() {
  std::string hex = NewPublicRequestId();
  std::string digits;
  for (char c : hex.substr(0, 20)) digits.push_back(static_cast<char>('0' + (c % 10)));
  return digits;
}

// Replaces the special-token spellings in message values with placeholders.
class Masker {
 public:
  explicit Masker(const tokenizer::Tokenizer& tokenizer) : vocab_(tokenizer.added_vocabulary()) {}

  // Masks every string inside `value` (messages, tools): content parts, tool calls and tool
  // definitions are the client's text as much as a message's content is. Object keys stay: a
  // template looks them up by name.
  Json Mask(const Json& value) {
    Json out = value;
    MaskInPlace(&out);
    return out;
  }

  // `rendered` with each placeholder back to its text, and where those texts are.
  std::string Unmask(absl::string_view rendered, std::vector<tokenizer::TextRange>* literal) const {
    std::string out;
    out.reserve(rendered.size());
    const std::string open = absl::StrCat(kOpen, nonce_, ".");
    size_t pos = 0;
    while (pos < rendered.size()) {
      const size_t at = rendered.find(open, pos);
      if (at == absl::string_view::npos) break;
      const size_t digits = at + open.size();
      const size_t close = rendered.find(kClose, digits);
      uint32_t index = 0;
      if (close == absl::string_view::npos ||
          !absl::SimpleAtoi(rendered.substr(digits, close - digits), &index) ||
          index >= texts_.size()) {
        // Not one of ours intact (a template cut it): keep the bytes as text.
        absl::StrAppend(&out, rendered.substr(pos, digits - pos));
        pos = digits;
        continue;
      }
      absl::StrAppend(&out, rendered.substr(pos, at - pos));
      literal->push_back({out.size(), out.size() + texts_[index].size()});
      out.append(texts_[index]);
      pos = close + kClose.size();
    }
    absl::StrAppend(&out, rendered.substr(pos));
    return out;
  }

  bool masked_any() const { return !texts_.empty(); }

 private:
  void MaskInPlace(Json* value) {
    if (value->is_string()) {
      *value = MaskString(value->get_ref<const std::string&>());
    } else if (value->is_structured()) {
      for (Json& item : *value) MaskInPlace(&item);
    }
  }

  std::string MaskString(const std::string& value) {
    const std::vector<tokenizer::TextRange> found = vocab_.FindSpecialSpellings(value);
    if (found.empty()) return value;
    if (nonce_.empty()) nonce_ = Nonce();
    std::string out;
    size_t pos = 0;
    for (const tokenizer::TextRange& r : found) {
      out.append(value, pos, r.begin - pos);
      absl::StrAppend(&out, kOpen, nonce_, ".", texts_.size(), kClose);
      texts_.push_back(value.substr(r.begin, r.end - r.begin));
      pos = r.end;
    }
    out.append(value, pos);
    return out;
  }

  const tokenizer::AddedVocabulary& vocab_;
  std::string nonce_;               // made on the first spelling found
  std::vector<std::string> texts_;  // placeholder index -> original text
};

}  // namespace

absl::StatusOr<RenderedChat> RenderChatPrompt(const chat::ChatTemplate& chat_template,
                                              const tokenizer::Tokenizer& tokenizer,
                                              const nlohmann::ordered_json& messages,
                                              const chat::ChatRenderOptions& options) {
  auto render = [&](const Json& m,
                    const chat::ChatRenderOptions& opts) -> absl::StatusOr<std::string> {
    absl::StatusOr<std::string> text = chat::RenderChat(chat_template, m, opts);
    if (!text.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("chat template: ", text.status().message()));
    }
    return text;
  };
  RenderedChat chat;
  Masker masker(tokenizer);
  const Json masked = masker.Mask(messages);
  chat::ChatRenderOptions masked_options = options;
  if (options.tools.has_value()) masked_options.tools = masker.Mask(*options.tools);
  if (!masker.masked_any()) {
    ASSIGN_OR_RETURN(chat.text, render(messages, options));
    ASSIGN_OR_RETURN(chat.token_ids, tokenizer.Encode(chat.text, false));
    return chat;
  }
  ASSIGN_OR_RETURN(const std::string rendered, render(masked, masked_options));
  std::vector<tokenizer::TextRange> literal;
  chat.text = masker.Unmask(rendered, &literal);
  ASSIGN_OR_RETURN(chat.token_ids, tokenizer.Encode(chat.text, false, literal));
  return chat;
}

}  // namespace expertmesh::router
