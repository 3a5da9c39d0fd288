#include "tools/make_model/bpe_trainer.h"

#include <cstdint>
#include <map>
#include <queue>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "tools/make_model/byte_level.h"

namespace expertmesh::make_model {
namespace {

using PairKey = uint64_t;

PairKey MakePair(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}
int32_t Left(PairKey p) { return static_cast<int32_t>(p >> 32); }
int32_t Right(PairKey p) { return static_cast<int32_t>(p & 0xffffffffu); }

struct HeapEntry {
  int64_t count;
  PairKey pair;
  // Max-heap on count; among equal counts the smaller pair key (left id, then right id) first.
  bool operator<(const HeapEntry& other) const {
    if (count != other.count) return count < other.count;
    return pair > other.pair;
  }
};

struct Word {
  std::vector<int32_t> symbols;
  int64_t freq = 0;
};

class Trainer {
 public:
  explicit Trainer(std::vector<Word> words) : words_(std::move(words)) {
    last_visit_.assign(words_.size(), -1);
    for (size_t w = 0; w < words_.size(); ++w) AddPairs(static_cast<int32_t>(w));
    for (const auto& [pair, count] : counts_) heap_.push({count, pair});
  }

  // The next pair to merge, or false when none occurs at least `min_frequency` times.
  bool Best(int min_frequency, PairKey& out) {
    while (!heap_.empty()) {
      const HeapEntry top = heap_.top();
      heap_.pop();
      auto it = counts_.find(top.pair);
      if (it == counts_.end() || it->second != top.count) continue;  // stale entry
      if (top.count < min_frequency) return false;
      out = top.pair;
      return true;
    }
    return false;
  }

  // Replaces every occurrence of `pair` by `merged` in the words that contain it.
  void Merge(PairKey pair, int32_t merged, int merge_index) {
    auto where_it = where_.find(pair);
    if (where_it == where_.end()) return;
    std::vector<int32_t> candidates = std::move(where_it->second);
    where_.erase(where_it);
    changed_.clear();
    for (int32_t w : candidates) {
      if (last_visit_[w] == merge_index) continue;
      last_visit_[w] = merge_index;
      Word& word = words_[w];
      if (!Contains(word.symbols, pair)) continue;
      RemovePairs(w);
      std::vector<int32_t> next;
      next.reserve(word.symbols.size());
      for (size_t i = 0; i < word.symbols.size(); ++i) {
        if (i + 1 < word.symbols.size() && MakePair(word.symbols[i], word.symbols[i + 1]) == pair) {
          next.push_back(merged);
          ++i;
        } else {
          next.push_back(word.symbols[i]);
        }
      }
      word.symbols = std::move(next);
      AddPairs(w);
    }
    for (PairKey p : changed_) {
      auto it = counts_.find(p);
      if (it == counts_.end()) continue;
      if (it->second <= 0) {
        counts_.erase(it);
      } else {
        heap_.push({it->second, p});
      }
    }
  }

 private:
  static bool Contains(const std::vector<int32_t>& symbols, PairKey pair) {
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      if (MakePair(symbols[i], symbols[i + 1]) == pair) return true;
    }
    return false;
  }

  void RemovePairs(int32_t w) {
    const Word& word = words_[w];
    for (size_t i = 0; i + 1 < word.symbols.size(); ++i) {
      const PairKey p = MakePair(word.symbols[i], word.symbols[i + 1]);
      counts_[p] -= word.freq;
      changed_.insert(p);
    }
  }

  void AddPairs(int32_t w) {
    const Word& word = words_[w];
    for (size_t i = 0; i + 1 < word.symbols.size(); ++i) {
      const PairKey p = MakePair(word.symbols[i], word.symbols[i + 1]);
      counts_[p] += word.freq;
      changed_.insert(p);
      std::vector<int32_t>& list = where_[p];
      if (list.empty() || list.back() != w) list.push_back(w);
    }
  }

  std::vector<Word> words_;
  absl::flat_hash_map<PairKey, int64_t> counts_;
  absl::flat_hash_map<PairKey, std::vector<int32_t>> where_;
  absl::flat_hash_set<PairKey> changed_;
  std::priority_queue<HeapEntry> heap_;
  std::vector<int> last_visit_;
};

}  // namespace

absl::StatusOr<BpeModel> TrainBpe(const std::vector<std::string>& documents,
                                  const PreTokenizer& pre_tokenizer,
                                  const BpeTrainerOptions& options) {
  if (options.vocab_size < 256) {
    return absl::InvalidArgumentError(absl::StrCat("BPE vocab size ", options.vocab_size,
                                                   " is below the 256 byte symbols it must hold"));
  }
  // Distinct pre-tokens with their frequencies. An ordered map makes word order (and so every
  // later tie) independent of hashing.
  std::map<std::string_view, int64_t> word_counts;
  for (size_t d = 0; d < documents.size(); ++d) {
    absl::StatusOr<std::vector<std::string_view>> pieces = pre_tokenizer.Split(documents[d]);
    if (!pieces.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("BPE corpus document ", d, ": ", pieces.status().message()));
    }
    for (std::string_view piece : *pieces) ++word_counts[piece];
  }
  std::vector<Word> words;
  words.reserve(word_counts.size());
  for (const auto& [text, count] : word_counts) {
    Word word;
    word.freq = count;
    for (unsigned char c : text) word.symbols.push_back(c);
    words.push_back(std::move(word));
  }

  BpeModel model;
  const auto& alphabet = ByteLevelAlphabet();
  model.vocab.assign(alphabet.begin(), alphabet.end());
  absl::flat_hash_map<std::string, int32_t> ids;
  for (int32_t i = 0; i < 256; ++i) ids[model.vocab[i]] = i;

  Trainer trainer(std::move(words));
  PairKey pair = 0;
  while (static_cast<int>(model.vocab.size()) < options.vocab_size &&
         trainer.Best(options.min_frequency, pair)) {
    const std::string& left = model.vocab[Left(pair)];
    const std::string& right = model.vocab[Right(pair)];
    std::string merged = left + right;
    // Two different pairs can spell the same string ("ab"+"c", "a"+"bc"): both merges are
    // kept, the token only once, as in Hugging Face's trainer.
    auto [it, inserted] = ids.try_emplace(merged, static_cast<int32_t>(model.vocab.size()));
    model.merges.emplace_back(left, right);
    if (inserted) model.vocab.push_back(std::move(merged));
    trainer.Merge(pair, it->second, static_cast<int>(model.merges.size()));
  }
  return model;
}

}  // namespace expertmesh::make_model
