#include "tools/make_model/tokenizer_writer.h"

#include <map>
#include <string>

namespace expertmesh::make_model {
namespace {

using Json = nlohmann::ordered_json;

Json AddedToken(int64_t id, const std::string& content) {
  return Json{{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
              {"rstrip", false}, {"normalized", false}, {"special", true}};
}

Json PreTokenizerJson(const TokenizerFamily& family) {
  Json split = {{"type", "Split"},
                {"pattern", {{"Regex", family.pattern}}},
                {"behavior", "Isolated"},
                {"invert", false}};
  Json byte_level = {{"type", "ByteLevel"},
                     {"add_prefix_space", false},
                     {"trim_offsets", true},
                     {"use_regex", false}};
  return Json{{"type", "Sequence"}, {"pretokenizers", Json::array({split, byte_level})}};
}

// Families that add bos do it with a TemplateProcessing post-processor, as Llama 3 does; the
// others keep the ByteLevel post-processor (offsets only), as Qwen2 does.
Json PostProcessorJson(const TokenizerFamily& family, std::optional<int64_t> bos_id) {
  if (!family.add_bos || !bos_id.has_value()) {
    return Json{{"type", "ByteLevel"},
                {"add_prefix_space", false},
                {"trim_offsets", false},
                {"use_regex", false}};
  }
  const std::string& bos = family.bos_token;
  auto special = [&](int type_id) {
    return Json{{"SpecialToken", {{"id", bos}, {"type_id", type_id}}}};
  };
  auto sequence = [](const char* id, int type_id) {
    return Json{{"Sequence", {{"id", id}, {"type_id", type_id}}}};
  };
  return Json{{"type", "TemplateProcessing"},
              {"single", Json::array({special(0), sequence("A", 0)})},
              {"pair", Json::array({special(0), sequence("A", 0), special(1), sequence("B", 1)})},
              {"special_tokens", {{bos, {{"id", bos}, {"ids", {*bos_id}}, {"tokens", {bos}}}}}}};
}

}  // namespace

TokenizerFiles BuildTokenizerFiles(const BpeModel& bpe, const TokenizerFamily& family,
                                   int64_t model_max_length) {
  TokenizerFiles files;
  const int64_t base = static_cast<int64_t>(bpe.vocab.size());
  std::map<std::string, int64_t> special_ids;
  Json added = Json::array();
  for (size_t i = 0; i < family.special_tokens.size(); ++i) {
    const int64_t id = base + static_cast<int64_t>(i);
    special_ids[family.special_tokens[i]] = id;
    added.push_back(AddedToken(id, family.special_tokens[i]));
  }
  files.num_tokens = base + static_cast<int64_t>(family.special_tokens.size());
  if (!family.bos_token.empty()) files.bos_id = special_ids.at(family.bos_token);
  files.eos_id = special_ids.at(family.eos_token);
  files.pad_id = special_ids.at(family.pad_token);
  for (const std::string& stop : family.stop_tokens) files.stop_ids.push_back(special_ids.at(stop));

  Json vocab = Json::object();
  for (size_t id = 0; id < bpe.vocab.size(); ++id) vocab[bpe.vocab[id]] = id;
  Json merges = Json::array();
  for (const auto& [left, right] : bpe.merges) merges.push_back(Json::array({left, right}));

  Json& t = files.tokenizer;
  t["version"] = "1.0";
  t["truncation"] = nullptr;
  t["padding"] = nullptr;
  t["added_tokens"] = added;
  t["normalizer"] = family.nfc ? Json{{"type", "NFC"}} : Json(nullptr);
  t["pre_tokenizer"] = PreTokenizerJson(family);
  t["post_processor"] = PostProcessorJson(family, files.bos_id);
  t["decoder"] = Json{{"type", "ByteLevel"},
                      {"add_prefix_space", true},
                      {"trim_offsets", true},
                      {"use_regex", true}};
  t["model"] = Json{{"type", "BPE"},
                    {"dropout", nullptr},
                    {"unk_token", nullptr},
                    {"continuing_subword_prefix", nullptr},
                    {"end_of_word_suffix", nullptr},
                    {"fuse_unk", false},
                    {"byte_fallback", false},
                    {"ignore_merges", false},
                    {"vocab", vocab},
                    {"merges", merges}};

  Json decoder = Json::object();
  for (const auto& token : added) {
    Json entry = token;
    const std::string id = std::to_string(entry["id"].get<int64_t>());
    entry.erase("id");
    decoder[id] = entry;
  }
  Json& c = files.tokenizer_config;
  c["add_bos_token"] = family.add_bos;
  c["add_eos_token"] = false;
  c["added_tokens_decoder"] = decoder;
  c["bos_token"] = family.bos_token.empty() ? Json(nullptr) : Json(family.bos_token);
  c["chat_template"] = family.chat_template;
  c["clean_up_tokenization_spaces"] = false;
  c["eos_token"] = family.eos_token;
  c["model_max_length"] = model_max_length;
  c["pad_token"] = family.pad_token;
  c["tokenizer_class"] = "PreTrainedTokenizerFast";
  return files;
}

}  // namespace expertmesh::make_model
