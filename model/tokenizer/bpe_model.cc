#include "model/tokenizer/bpe_model.h"

#include <atomic>
#include <climits>
#include <queue>
#include <utility>

#include "absl/strings/str_cat.h"
#include "model/tokenizer/byte_level.h"
#include "model/tokenizer/scratch.h"

namespace expertmesh::tokenizer {
namespace {

using nlohmann::json;

// Each thread caches the BPE result of recent words; a word seen again costs one hash lookup.
// The cache belongs to one model at a time (keyed by instance id), so it needs no lock.
constexpr size_t kMaxCachedWordBytes = 128;
constexpr size_t kMaxCacheEntries = 1 << 14;

struct WordCache {
  uint64_t owner = 0;
  absl::flat_hash_map<std::string, std::vector<int32_t>> entries;
};

WordCache& GetWordCache(uint64_t owner) {
  thread_local WordCache cache;
  if (cache.owner != owner) {
    cache.entries.clear();
    cache.owner = owner;
  }
  return cache;
}

std::atomic<uint64_t> next_instance_id{1};

absl::Status ParseMerge(const json& item, size_t index, std::string* a, std::string* b) {
  if (item.is_string()) {
    const std::string& line = item.get_ref<const std::string&>();
    const size_t space = line.find(' ');
    if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model.merges[", index, "] = \"", line, "\" is not two tokens separated by one space"));
    }
    *a = line.substr(0, space);
    *b = line.substr(space + 1);
    return absl::OkStatus();
  }
  if (item.is_array() && item.size() == 2 && item[0].is_string() && item[1].is_string()) {
    *a = item[0].get<std::string>();
    *b = item[1].get<std::string>();
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("model.merges[", index, "] must be \"a b\" or [\"a\", \"b\"]"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const json& model) {
  if (!model.is_object()) return absl::InvalidArgumentError("\"model\" must be an object");
  if (!model.contains("type") || !model["type"].is_string()) {
    return absl::InvalidArgumentError("model.type is missing");
  }
  const std::string type = model["type"].get<std::string>();
  if (type != "BPE") {
    return absl::InvalidArgumentError(
        absl::StrCat("model type \"", type, "\" is not supported (only byte-level \"BPE\")"));
  }
  if (model.contains("byte_fallback") && model["byte_fallback"].is_boolean() &&
      model["byte_fallback"].get<bool>()) {
    return absl::InvalidArgumentError(
        "model.byte_fallback = true is not supported (only byte-level BPE)");
  }
  if (model.contains("dropout") && !model["dropout"].is_null()) {
    return absl::InvalidArgumentError("model.dropout is not supported (must be null)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("model.", key, " is not supported"));
    }
  }
  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    return absl::InvalidArgumentError("model.vocab must be an object of token -> id");
  }
  if (!model.contains("merges") || !model["merges"].is_array()) {
    return absl::InvalidArgumentError("model.merges must be an array");
  }
  auto bpe = std::unique_ptr<BpeModel>(new BpeModel());
  bpe->instance_id_ = next_instance_id.fetch_add(1);
  if (model.contains("ignore_merges") && model["ignore_merges"].is_boolean()) {
    bpe->ignore_merges_ = model["ignore_merges"].get<bool>();
  }

  const json& vocab = model["vocab"];
  bpe->token_to_id_.reserve(vocab.size());
  int64_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() >= INT32_MAX) {
      return absl::InvalidArgumentError(
          absl::StrCat("model.vocab[\"", it.key(), "\"] must be a non-negative integer id"));
    }
    const int64_t id = it.value().get<int64_t>();
    bpe->token_to_id_[it.key()] = static_cast<int32_t>(id);
    max_id = std::max(max_id, id);
  }
  if (max_id >= (int64_t{1} << 24)) {
    return absl::InvalidArgumentError(absl::StrCat("model.vocab id ", max_id, " is too large"));
  }
  bpe->id_to_token_.resize(static_cast<size_t>(max_id + 1));
  for (const auto& [token, id] : bpe->token_to_id_) bpe->id_to_token_[id] = token;
  for (int b = 0; b < 256; ++b) {
    bpe->byte_to_id_[b] = bpe->TokenToId(ByteToChar(static_cast<unsigned char>(b)));
  }

  const json& merges = model["merges"];
  bpe->merges_.reserve(merges.size());
  std::string a, b;
  for (size_t i = 0; i < merges.size(); ++i) {
    if (absl::Status s = ParseMerge(merges[i], i, &a, &b); !s.ok()) return s;
    const int32_t a_id = bpe->TokenToId(a);
    const int32_t b_id = bpe->TokenToId(b);
    if (a_id < 0 || b_id < 0) {
      return absl::InvalidArgumentError(absl::StrCat("model.merges[", i, "] = (\"", a, "\", \"", b,
                                                     "\") references token \"", a_id < 0 ? a : b,
                                                     "\" not in the vocab"));
    }
    const int32_t new_id = bpe->TokenToId(a + b);
    if (new_id < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("model.merges[", i, "]: merged token \"", a + b, "\" is not in the vocab"));
    }
    // Like HF, a repeated pair keeps its last rank.
    bpe->merges_[PairKey(a_id, b_id)] = Merge{static_cast<int32_t>(i), new_id};
  }
  return bpe;
}

int32_t BpeModel::TokenToId(std::string_view token) const {
  auto it = token_to_id_.find(absl::string_view(token.data(), token.size()));
  return it == token_to_id_.end() ? -1 : it->second;
}

std::string_view BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) return {};
  return id_to_token_[id];
}

// Short words: keep the rank of each adjacent pair in an array and merge the lowest rank
// (leftmost on ties) until no pair merges; only the two pairs around a merge are looked up again.
void BpeModel::MergeLinear(std::vector<int32_t>* symbols) const {
  std::vector<int32_t>& s = *symbols;
  thread_local std::vector<const Merge*> pair;
  const TrimScratchOnExit trim_pair(pair);
  pair.resize(s.size());
  for (size_t i = 0; i + 1 < s.size(); ++i) pair[i] = FindMerge(s[i], s[i + 1]);
  size_t n = s.size();
  while (n > 1) {
    size_t best = n;
    int32_t best_rank = INT32_MAX;
    for (size_t i = 0; i + 1 < n; ++i) {
      if (pair[i] != nullptr && pair[i]->rank < best_rank) {
        best_rank = pair[i]->rank;
        best = i;
      }
    }
    if (best == n) break;
    s[best] = pair[best]->new_id;
    for (size_t i = best + 1; i + 1 < n; ++i) {
      s[i] = s[i + 1];
      pair[i] = pair[i + 1];
    }
    --n;
    if (best > 0) pair[best - 1] = FindMerge(s[best - 1], s[best]);
    if (best + 1 < n) pair[best] = FindMerge(s[best], s[best + 1]);
  }
  s.resize(n);
}

// Long words: a min-heap of candidate merges ordered by (rank, position) over a linked list of
// symbols, as HF does. An entry is stale once either side has changed id.
void BpeModel::MergeHeap(std::vector<int32_t>* symbols) const {
  std::vector<int32_t>& id = *symbols;
  const int32_t n = static_cast<int32_t>(id.size());
  std::vector<int32_t> next(n), prev(n);
  std::vector<bool> alive(n, true);
  for (int32_t i = 0; i < n; ++i) {
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  struct Candidate {
    int32_t rank, pos, left, right;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto push = [&](int32_t pos) {
    if (pos < 0 || next[pos] < 0) return;
    if (const Merge* m = FindMerge(id[pos], id[next[pos]])) {
      heap.push({m->rank, pos, id[pos], id[next[pos]]});
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    const int32_t right = next[c.pos];
    if (!alive[c.pos] || right < 0 || id[c.pos] != c.left || id[right] != c.right) continue;
    id[c.pos] = FindMerge(c.left, c.right)->new_id;
    alive[right] = false;
    next[c.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.pos;
    push(prev[c.pos]);
    push(c.pos);
  }
  int32_t out = 0;
  for (int32_t i = 0; i >= 0 && i < n; i = next[i]) id[out++] = id[i];
  id.resize(out);
}

void BpeModel::EncodeUncached(std::string_view word, std::vector<int32_t>* ids) const {
  if (ignore_merges_) {
    const int32_t whole = TokenToId(ByteLevelEncode(word));
    if (whole >= 0) {
      ids->push_back(whole);
      return;
    }
  }
  thread_local std::vector<int32_t> symbols;
  const TrimScratchOnExit trim_symbols(symbols);
  symbols.clear();
  for (char c : word) {
    // Like HF with no unk_token, a byte whose symbol is not in the vocab is dropped.
    const int32_t id = byte_to_id_[static_cast<unsigned char>(c)];
    if (id >= 0) symbols.push_back(id);
  }
  if (symbols.size() > heap_threshold_) {
    MergeHeap(&symbols);
  } else {
    MergeLinear(&symbols);
  }
  ids->insert(ids->end(), symbols.begin(), symbols.end());
}

void BpeModel::EncodeWord(std::string_view word, std::vector<int32_t>* ids) const {
  if (word.size() > kMaxCachedWordBytes) {
    EncodeUncached(word, ids);
    return;
  }
  WordCache& cache = GetWordCache(instance_id_);
  auto it = cache.entries.find(absl::string_view(word.data(), word.size()));
  if (it != cache.entries.end()) {
    ids->insert(ids->end(), it->second.begin(), it->second.end());
    return;
  }
  const size_t start = ids->size();
  EncodeUncached(word, ids);
  if (cache.entries.size() >= kMaxCacheEntries) cache.entries.clear();
  cache.entries.emplace(std::string(word), std::vector<int32_t>(ids->begin() + start, ids->end()));
}

}  // namespace expertmesh::tokenizer
