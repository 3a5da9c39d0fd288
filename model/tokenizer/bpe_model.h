// The tokenizer.json "model" of type BPE, byte-level: a vocabulary of byte-level strings and a
// ranked merge list. Encodes one pre-tokenized word (raw bytes) into token ids.
#ifndef EXPERTMESH_MODEL_TOKENIZER_BPE_MODEL_H_
#define EXPERTMESH_MODEL_TOKENIZER_BPE_MODEL_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace expertmesh::tokenizer {

class BpeModel {
 public:
  // Builds the model from tokenizer.json's "model" object. INVALID_ARGUMENT when the type is
  // not BPE, byte_fallback or dropout is set, vocab/merges are malformed, a merge names a token
  // missing from the vocab, or the merged token is missing from the vocab.
  static absl::StatusOr<std::unique_ptr<BpeModel>> FromJson(const nlohmann::json& model);

  // Appends the ids of `word` (raw bytes; BPE starts from one byte-level symbol per byte).
  // Thread-safe: the word cache is per thread.
  void EncodeWord(std::string_view word, std::vector<int32_t>* ids) const;

  // Token string (byte-level alphabet) to id, or -1.
  int32_t TokenToId(std::string_view token) const;
  // Id to token string; empty view when the id is not in the vocabulary.
  std::string_view IdToToken(int32_t id) const;
  // One more than the largest id in the vocabulary.
  int32_t size() const { return static_cast<int32_t>(id_to_token_.size()); }

  // Words longer than this many symbols merge with a heap instead of a linear scan; both give
  // the same result (tests compare them by lowering it).
  void set_heap_threshold_for_testing(size_t n) { heap_threshold_ = n; }

 private:
  BpeModel() = default;
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  const Merge* FindMerge(int32_t a, int32_t b) const {
    auto it = merges_.find(PairKey(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  }
  void MergeLinear(std::vector<int32_t>* symbols) const;
  void MergeHeap(std::vector<int32_t>* symbols) const;
  void EncodeUncached(std::string_view word, std::vector<int32_t>* ids) const;

  absl::flat_hash_map<std::string, int32_t> token_to_id_;
  std::vector<std::string> id_to_token_;
  absl::flat_hash_map<uint64_t, Merge> merges_;
  std::array<int32_t, 256> byte_to_id_{};
  bool ignore_merges_ = false;
  size_t heap_threshold_ = 64;
  uint64_t instance_id_ = 0;  // keys the per-thread word cache
};

}  // namespace expertmesh::tokenizer

#endif  // EXPERTMESH_MODEL_TOKENIZER_BPE_MODEL_H_
