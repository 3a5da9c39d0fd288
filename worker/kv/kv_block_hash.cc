#include "worker/kv/kv_block_hash.h"

namespace expertmesh::kv {
namespace {

// The splitmix64 finaliser: a bijection on 64 bits with full avalanche.
uint64_t Mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

}  // namespace

uint64_t HashKvBlock(uint64_t parent_hash, std::span<const int32_t> tokens) {
  // Mixing the count in keeps blocks of different sizes apart even with equal token prefixes.
  uint64_t h = parent_hash ^ (0x9e3779b97f4a7c15ULL * (tokens.size() + 1));
  for (int32_t t : tokens) h = Mix64(h ^ static_cast<uint32_t>(t));
  return Mix64(h + 0x632be59bd9b4e019ULL);
}

std::vector<uint64_t> HashFullKvBlocks(std::span<const int32_t> tokens, int block_size,
                                       size_t max_blocks) {
  std::vector<uint64_t> hashes;
  uint64_t parent = kRootBlockHash;
  for (size_t start = 0; start + block_size <= tokens.size() && hashes.size() < max_blocks;
       start += block_size) {
    parent = HashKvBlock(parent, tokens.subspan(start, block_size));
    hashes.push_back(parent);
  }
  return hashes;
}

}  // namespace expertmesh::kv
