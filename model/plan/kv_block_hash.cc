#include "model/plan/kv_block_hash.h"

#include "common/splitmix64.h"

namespace expertmesh::model {

uint64_t KvRootHash(std::string_view cache_salt) {
  if (cache_salt.empty()) return kRootBlockHash;
  uint64_t h = kRootBlockHash ^ (kGoldenGamma * (cache_salt.size() + 1));
  for (char c : cache_salt) h = SplitMix64Mix(h ^ static_cast<unsigned char>(c));
  return SplitMix64Mix(h + 0xa4093822299f31d0ULL);
}

uint64_t HashKvBlock(uint64_t parent_hash, std::span<const int32_t> tokens) {
  // Mixing the count in keeps blocks of different sizes apart even with equal token prefixes.
  uint64_t h = parent_hash ^ (kGoldenGamma * (tokens.size() + 1));
  for (int32_t t : tokens) h = SplitMix64Mix(h ^ static_cast<uint32_t>(t));
  return SplitMix64Mix(h + 0x632be59bd9b4e019ULL);
}

std::vector<uint64_t> HashFullKvBlocks(std::span<const int32_t> tokens, int block_size,
                                       size_t max_blocks, uint64_t root) {
  std::vector<uint64_t> hashes;
  uint64_t parent = root;
  for (size_t start = 0; start + block_size <= tokens.size() && hashes.size() < max_blocks;
       start += block_size) {
    parent = HashKvBlock(parent, tokens.subspan(start, block_size));
    hashes.push_back(parent);
  }
  return hashes;
}

}  // namespace expertmesh::model
