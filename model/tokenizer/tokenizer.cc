#include "model/tokenizer/tokenizer.h"

#include <algorithm>
#include <deque>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "model/tokenizer/byte_level.h"
#include "model/tokenizer/scratch.h"
#include "model/tokenizer/utf8.h"
#include "nlohmann/json.hpp"

namespace expertmesh::tokenizer {
namespace {

using nlohmann::json;

// Prefixes a component's error with the file it came from.
absl::Status InFile(std::string_view source, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(AbslView(source), ": ", status.message()));
}

absl::Status CheckDecoder(const json& spec) {
  if (spec.is_object() && spec.contains("type") && spec["type"] == "ByteLevel") {
    return absl::OkStatus();
  }
  if (spec.is_object() && spec.contains("type") && spec["type"] == "Sequence" &&
      spec.contains("decoders") && spec["decoders"].is_array() && spec["decoders"].size() == 1) {
    return CheckDecoder(spec["decoders"][0]);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("decoder ", spec.dump().substr(0, 80), " is not supported (only ByteLevel)"));
}

absl::StatusOr<std::string> ReadOptionalFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (absl::IsNotFound(text.status())) return std::string();
  return text;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::LoadFromDirectory(const std::string& dir) {
  const std::string tokenizer_path = dir + "/tokenizer.json";
  const std::string config_path = dir + "/tokenizer_config.json";
  const std::string generation_path = dir + "/generation_config.json";
  ASSIGN_OR_RETURN(std::string tokenizer_json, ReadFileToString(tokenizer_path));
  ASSIGN_OR_RETURN(std::string config_json, ReadOptionalFile(config_path));
  ASSIGN_OR_RETURN(std::string generation_json, ReadOptionalFile(generation_path));
  ASSIGN_OR_RETURN(TokenizerConfig config, ParseTokenizerConfig(config_json, config_path,
                                                                generation_json, generation_path));
  return FromJson(tokenizer_json, tokenizer_path, std::move(config));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view tokenizer_json,
                                                               std::string_view source_name,
                                                               TokenizerConfig config) {
  json root = json::parse(tokenizer_json, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(AbslView(source_name), ": not valid JSON"));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(AbslView(source_name), ": top level must be an object"));
  }
  if (!root.contains("model")) {
    return absl::InvalidArgumentError(absl::StrCat(AbslView(source_name), ": missing \"model\""));
  }
  auto tok = std::unique_ptr<Tokenizer>(new Tokenizer());
  tok->source_ = std::string(source_name);
  auto in_file = [&](const absl::Status& s) { return InFile(source_name, s); };

  const json null_json;
  auto field = [&](const char* key) -> const json& {
    return root.contains(key) ? root[key] : null_json;
  };
  absl::StatusOr<std::unique_ptr<Normalizer>> normalizer = NormalizerFromJson(field("normalizer"));
  RETURN_IF_ERROR(in_file(normalizer.status()));
  tok->normalizer_ = std::move(*normalizer);
  absl::StatusOr<std::unique_ptr<PreTokenizer>> pre =
      PreTokenizer::FromJson(field("pre_tokenizer"));
  RETURN_IF_ERROR(in_file(pre.status()));
  tok->pre_tokenizer_ = std::move(*pre);
  absl::StatusOr<std::unique_ptr<BpeModel>> model = BpeModel::FromJson(root["model"]);
  RETURN_IF_ERROR(in_file(model.status()));
  tok->model_ = std::move(*model);
  absl::StatusOr<std::unique_ptr<AddedVocabulary>> added =
      AddedVocabulary::FromJson(field("added_tokens"), tok->normalizer_.get());
  RETURN_IF_ERROR(in_file(added.status()));
  tok->added_ = std::move(*added);
  absl::StatusOr<PostProcessor> post = PostProcessorFromJson(field("post_processor"));
  RETURN_IF_ERROR(in_file(post.status()));
  tok->post_processor_ = std::move(*post);
  RETURN_IF_ERROR(in_file(CheckDecoder(field("decoder"))));

  // Precompute what each id decodes to: HF's ByteLevel decoder maps every token (added tokens
  // too) through the byte alphabet, falling back to the token's own UTF-8 when it cannot.
  int32_t size = tok->model_->size();
  for (const AddedToken& t : tok->added_->tokens()) size = std::max(size, t.id + 1);
  tok->token_bytes_.resize(size);
  tok->special_flag_.assign(size, 0);
  for (int32_t id = 0; id < tok->model_->size(); ++id) {
    AppendByteLevelDecoded(tok->model_->IdToToken(id), &tok->token_bytes_[id]);
  }
  for (const AddedToken& t : tok->added_->tokens()) {
    tok->token_bytes_[t.id].clear();
    AppendByteLevelDecoded(t.content, &tok->token_bytes_[t.id]);
    tok->special_flag_[t.id] = t.special ? 1 : 0;
  }
  for (int32_t id : tok->post_processor_.prefix) {
    if (id >= size) {
      return absl::InvalidArgumentError(absl::StrCat(
          AbslView(source_name), ": post_processor uses id ", id, " outside the vocabulary"));
    }
  }
  for (int32_t id : tok->post_processor_.suffix) {
    if (id >= size) {
      return absl::InvalidArgumentError(absl::StrCat(
          AbslView(source_name), ": post_processor uses id ", id, " outside the vocabulary"));
    }
  }
  tok->config_ = std::move(config);
  tok->ResolveSpecialTokens();
  return tok;
}

void Tokenizer::ResolveSpecialTokens() {
  auto resolve = [&](const std::optional<std::string>& token, std::string* text, int32_t* id) {
    if (!token.has_value()) return;
    *text = *token;
    *id = TokenToId(*token);
  };
  resolve(config_.bos_token, &special_.bos_token, &special_.bos_id);
  resolve(config_.eos_token, &special_.eos_token, &special_.eos_id);
  resolve(config_.pad_token, &special_.pad_token, &special_.pad_id);
  int32_t unk_id = -1;
  resolve(config_.unk_token, &special_.unk_token, &unk_id);
  if (special_.bos_id < 0 && config_.generation_bos_token_id.has_value()) {
    special_.bos_id = *config_.generation_bos_token_id;
    special_.bos_token = std::string(IdToToken(special_.bos_id));
  }
  if (special_.eos_id < 0 && !config_.generation_eos_token_ids.empty()) {
    special_.eos_id = config_.generation_eos_token_ids.front();
    special_.eos_token = std::string(IdToToken(special_.eos_id));
  }
  if (special_.eos_id >= 0) special_.stop_ids.push_back(special_.eos_id);
  for (int32_t id : config_.generation_eos_token_ids) {
    if (std::find(special_.stop_ids.begin(), special_.stop_ids.end(), id) ==
        special_.stop_ids.end()) {
      special_.stop_ids.push_back(id);
    }
  }
}

absl::Status Tokenizer::EncodeNormalized(std::string_view text, std::vector<int32_t>* ids) const {
  thread_local std::vector<std::string_view> words;
  const TrimScratchOnExit trim_words(words);
  std::deque<std::string> storage;
  RETURN_IF_ERROR(pre_tokenizer_->Split(text, &words, &storage));
  for (std::string_view word : words) model_->EncodeWord(word, ids);
  return absl::OkStatus();
}

absl::Status Tokenizer::EncodePlain(std::string_view text, bool match_special,
                                    std::vector<int32_t>* ids) const {
  // A plain piece of the raw text: normalize, then split on normalized added tokens.
  std::string normalized;
  std::string_view view = text;
  if (normalizer_ != nullptr) {
    normalized.assign(text);
    RETURN_IF_ERROR(normalizer_->Normalize(&normalized));
    view = normalized;
  }
  std::vector<Segment> segments;
  const TextRange whole[1] = {{0, view.size()}};
  RETURN_IF_ERROR(added_->Split(view, /*normalized=*/true, &segments,
                                match_special ? std::span<const TextRange>() : whole));
  for (const Segment& segment : segments) {
    if (segment.token_id >= 0) {
      ids->push_back(segment.token_id);
    } else {
      RETURN_IF_ERROR(EncodeNormalized(segment.text, ids));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                                       bool add_special_tokens) const {
  return Encode(text, add_special_tokens, {});
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                                       bool add_special_tokens,
                                                       std::span<const TextRange> literal) const {
  if (const size_t bad = FindInvalidUtf8(text); bad != std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("Encode: input is not valid UTF-8 (byte offset ", bad, ")"));
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 8);
  if (add_special_tokens) ids = post_processor_.prefix;
  std::vector<Segment> segments;
  RETURN_IF_ERROR(added_->Split(text, /*normalized=*/false, &segments, literal));
  size_t next_literal = 0;  // segments come in order, so one pass over the ranges
  for (const Segment& segment : segments) {
    if (segment.token_id >= 0) {
      ids.push_back(segment.token_id);
      continue;
    }
    const size_t begin = static_cast<size_t>(segment.text.data() - text.data());
    const size_t end = begin + segment.text.size();
    while (next_literal < literal.size() && literal[next_literal].end <= begin) ++next_literal;
    const bool touches_literal = next_literal < literal.size() && literal[next_literal].begin < end;
    RETURN_IF_ERROR(EncodePlain(segment.text, /*match_special=*/!touches_literal, &ids));
  }
  if (add_special_tokens) {
    ids.insert(ids.end(), post_processor_.suffix.begin(), post_processor_.suffix.end());
  }
  return ids;
}

std::string_view Tokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return token_bytes_[id];
}

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && special_flag_[id] != 0;
}

std::string Tokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (skip_special_tokens && IsSpecial(id)) continue;
    bytes.append(TokenBytes(id));
  }
  std::string out;
  out.reserve(bytes.size());
  AppendUtf8Lossy(bytes, &out);
  return out;
}

int32_t Tokenizer::TokenToId(std::string_view token) const {
  if (const AddedToken* added = added_->FindByContent(token)) return added->id;
  return model_->TokenToId(token);
}

std::string_view Tokenizer::IdToToken(int32_t id) const {
  if (const AddedToken* added = added_->FindById(id)) return added->content;
  return model_->IdToToken(id);
}

}  // namespace expertmesh::tokenizer
