#include "model/tokenizer/added_vocabulary.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/tokenizer/scratch.h"
#include "model/tokenizer/utf8.h"

namespace expertmesh::tokenizer {
namespace {

using nlohmann::json;

absl::Status ReadFlag(const json& item, const char* key, size_t index, bool* value) {
  if (!item.contains(key) || item[key].is_null()) return absl::OkStatus();
  if (!item[key].is_boolean()) {
    return absl::InvalidArgumentError(
        absl::StrCat("added_tokens[", index, "].", key, " must be a boolean"));
  }
  *value = item[key].get<bool>();
  return absl::OkStatus();
}

}  // namespace

AddedVocabulary::AddedVocabulary() {
  raw_matcher_.terminal.push_back(-1);
  normalized_matcher_.terminal.push_back(-1);
}

void AddedVocabulary::Matcher::Add(std::string_view pattern, int32_t token_index) {
  if (pattern.empty()) return;
  first_byte[static_cast<unsigned char>(pattern[0])] = true;
  int32_t node = 0;
  for (char c : pattern) {
    const uint64_t key = (static_cast<uint64_t>(node) << 8) | static_cast<unsigned char>(c);
    auto it = edges.find(key);
    if (it == edges.end()) {
      const int32_t child = static_cast<int32_t>(terminal.size());
      terminal.push_back(-1);
      edges.emplace(key, child);
      node = child;
    } else {
      node = it->second;
    }
  }
  // A repeated content keeps its first entry, like HF ignoring duplicate added tokens.
  if (terminal[node] < 0) terminal[node] = token_index;
}

std::pair<size_t, int32_t> AddedVocabulary::Matcher::LongestAt(std::string_view text,
                                                               size_t pos) const {
  std::pair<size_t, int32_t> best{0, -1};
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const uint64_t key = (static_cast<uint64_t>(node) << 8) | static_cast<unsigned char>(text[i]);
    auto it = edges.find(key);
    if (it == edges.end()) break;
    node = it->second;
    if (terminal[node] >= 0) best = {i + 1 - pos, terminal[node]};
  }
  return best;
}

absl::StatusOr<std::unique_ptr<AddedVocabulary>> AddedVocabulary::FromJson(
    const json& tokens, const Normalizer* normalizer) {
  auto vocab = std::unique_ptr<AddedVocabulary>(new AddedVocabulary());
  ASSIGN_OR_RETURN(vocab->word_char_, Regex::Compile(R"(^\w$)"));
  ASSIGN_OR_RETURN(vocab->space_char_, Regex::Compile(R"(^\s$)"));
  ASSIGN_OR_RETURN(vocab->leading_space_, Regex::Compile(R"(^\s+)"));
  if (tokens.is_null()) return vocab;
  if (!tokens.is_array()) return absl::InvalidArgumentError("added_tokens must be an array");
  for (size_t i = 0; i < tokens.size(); ++i) {
    const json& item = tokens[i];
    if (!item.is_object() || !item.contains("id") || !item["id"].is_number_integer() ||
        item["id"].get<int64_t>() < 0 || item["id"].get<int64_t>() >= (int64_t{1} << 24) ||
        !item.contains("content") || !item["content"].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "added_tokens[", i, "] must be an object with an integer \"id\" and a \"content\""));
    }
    AddedToken token;
    token.id = static_cast<int32_t>(item["id"].get<int64_t>());
    token.content = item["content"].get<std::string>();
    if (FindInvalidUtf8(token.content) != std::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("added_tokens[", i, "] is not UTF-8"));
    }
    RETURN_IF_ERROR(ReadFlag(item, "single_word", i, &token.single_word));
    RETURN_IF_ERROR(ReadFlag(item, "lstrip", i, &token.lstrip));
    RETURN_IF_ERROR(ReadFlag(item, "rstrip", i, &token.rstrip));
    RETURN_IF_ERROR(ReadFlag(item, "normalized", i, &token.normalized));
    RETURN_IF_ERROR(ReadFlag(item, "special", i, &token.special));
    if (token.content.empty() || vocab->by_content_.contains(token.content)) continue;
    const auto index = static_cast<int32_t>(vocab->tokens_.size());
    if (token.normalized) {
      std::string pattern = token.content;
      if (normalizer != nullptr) RETURN_IF_ERROR(normalizer->Normalize(&pattern));
      vocab->normalized_matcher_.Add(pattern, index);
    } else {
      vocab->raw_matcher_.Add(token.content, index);
    }
    vocab->by_id_[token.id] = index;
    vocab->by_content_[token.content] = index;
    vocab->tokens_.push_back(std::move(token));
  }
  return vocab;
}

const AddedToken* AddedVocabulary::FindById(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocabulary::FindByContent(std::string_view content) const {
  auto it = by_content_.find(absl::string_view(content.data(), content.size()));
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

absl::Status AddedVocabulary::Split(std::string_view text, bool normalized,
                                    std::vector<Segment>* out,
                                    std::span<const TextRange> literal) const {
  size_t next_literal = 0;  // first range that may still overlap a match (matches move right)
  const Matcher& matcher = normalized ? normalized_matcher_ : raw_matcher_;
  thread_local std::vector<std::pair<size_t, size_t>> found;
  const TrimScratchOnExit trim_found(found);
  size_t start_offset = 0;  // end of the last emitted segment
  size_t pos = 0;
  if (matcher.edges.empty()) pos = text.size();
  while (pos < text.size()) {
    if (!matcher.first_byte[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    const auto [length, index] = matcher.LongestAt(text, pos);
    if (index < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[index];
    size_t start = pos;
    size_t stop = pos + length;
    pos = stop;  // matches never overlap, even when this one is discarded
    if (token.special) {
      while (next_literal < literal.size() && literal[next_literal].end <= start) ++next_literal;
      if (next_literal < literal.size() && literal[next_literal].begin < stop) continue;
    }
    if (token.single_word) {
      bool word_before = false, word_after = false;
      if (start > 0) {
        size_t char_start = start - 1;
        while (char_start > 0 && (static_cast<unsigned char>(text[char_start]) & 0xC0) == 0x80) {
          --char_start;
        }
        found.clear();
        RETURN_IF_ERROR(word_char_->FindAll(text.substr(char_start, start - char_start), &found));
        word_before = !found.empty();
      }
      if (stop < text.size()) {
        found.clear();
        const size_t len = Utf8SequenceLength(static_cast<unsigned char>(text[stop]));
        RETURN_IF_ERROR(word_char_->FindAll(text.substr(stop, len), &found));
        word_after = !found.empty();
      }
      if (word_before || word_after) continue;
    }
    if (token.lstrip) {
      // Walk back over whitespace one character at a time (a `\s+$` search would be quadratic
      // on long runs), stopping at the end of the previous segment.
      while (start > start_offset) {
        size_t char_start = start - 1;
        while (char_start > start_offset &&
               (static_cast<unsigned char>(text[char_start]) & 0xC0) == 0x80) {
          --char_start;
        }
        found.clear();
        RETURN_IF_ERROR(space_char_->FindAll(text.substr(char_start, start - char_start), &found));
        if (found.empty()) break;
        start = char_start;
      }
    }
    if (token.rstrip) {
      found.clear();
      RETURN_IF_ERROR(leading_space_->FindAll(text.substr(stop), &found));
      if (!found.empty()) stop += found.front().second;
      pos = stop;
    }
    if (start > start_offset) out->push_back({text.substr(start_offset, start - start_offset), -1});
    out->push_back({text.substr(start, stop - start), token.id});
    start_offset = stop;
  }
  if (start_offset < text.size()) out->push_back({text.substr(start_offset), -1});
  return absl::OkStatus();
}

std::vector<TextRange> AddedVocabulary::FindSpecialSpellings(std::string_view text) const {
  std::vector<TextRange> found;
  for (const Matcher* matcher : {&raw_matcher_, &normalized_matcher_}) {
    if (matcher->edges.empty()) continue;
    size_t pos = 0;
    while (pos < text.size()) {
      if (!matcher->first_byte[static_cast<unsigned char>(text[pos])]) {
        ++pos;
        continue;
      }
      const auto [length, index] = matcher->LongestAt(text, pos);
      if (index >= 0 && tokens_[index].special) {
        found.push_back({pos, pos + length});
        pos += length;
      } else {
        ++pos;
      }
    }
  }
  // Two sorted passes: merge into one sorted list of disjoint ranges.
  std::sort(found.begin(), found.end(),
            [](const TextRange& a, const TextRange& b) { return a.begin < b.begin; });
  std::vector<TextRange> merged;
  for (const TextRange& r : found) {
    if (!merged.empty() && r.begin < merged.back().end) {
      merged.back().end = std::max(merged.back().end, r.end);
    } else {
      merged.push_back(r);
    }
  }
  return merged;
}

}  // namespace expertmesh::tokenizer
