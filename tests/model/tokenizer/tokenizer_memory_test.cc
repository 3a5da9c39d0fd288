// A huge input must not leave its peak scratch memory behind in every thread that ever
// tokenized one: the router tokenizes on many handler threads, and a few MB of thread-local
// scratch per thread per huge prompt once grew the router by ~23 MB for each rejected 200k-token
// prompt (issue 14, finding 1), found by watching the resident set as below: 12 threads kept
// +552 MB before; thread-local scratch trimmed, +139 MB (glibc's arenas keeping the freed
// blocks); with the router's malloc policy as well, +3 MB.
#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/malloc_policy.h"
#include "gtest/gtest.h"
#include "tests/model/tokenizer/test_util.h"

namespace expertmesh::tokenizer {
namespace {

size_t ResidentBytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) != 0) continue;
    std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    size_t kb = 0;
    if (parts.size() >= 2 && absl::SimpleAtoi(parts[1], &kb)) return kb * 1024;
  }
  return 0;
}

TEST(TokenizerMemory, HugeInputsLeaveNoScratchBehindInTheirThreads) {
  ASSERT_TRUE(ReturnLargeFreedBlocksToTheSystem());  // as the router does at start
  std::unique_ptr<Tokenizer> tok = testing::LoadRealTokenizer("qwen2");
  ASSERT_NE(tok, nullptr);
  // ~200k tokens of prose, and one 1 MB "word" (no spaces) that BPE must merge whole.
  std::string prose;
  while (prose.size() < (1u << 20)) prose += "The quick brown fox jumps over the lazy dog 123. ";
  const std::string word(1 << 20, 'x');
  auto encode_all = [&] {
    for (const std::string* text : std::vector<const std::string*>{&prose, &word}) {
      absl::StatusOr<std::vector<int32_t>> ids = tok->Encode(*text, false);
      ASSERT_TRUE(ids.ok()) << ids.status();
      ASSERT_GT(ids->size(), 1000u);
    }
  };
  std::thread(encode_all).join();  // warm what is shared (caches of the model, allocator arenas)
  const size_t before = ResidentBytes();
  // Threads that stay alive, as a server's handler threads do.
  constexpr int kThreads = 12;
  std::vector<std::thread> threads;
  std::atomic<int> done{0};
  std::atomic<bool> release{false};
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      encode_all();
      done.fetch_add(1);
      while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
  }
  while (done.load() < kThreads) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const size_t after = ResidentBytes();
  release.store(true);
  for (std::thread& t : threads) t.join();
  const double grown_mb = (static_cast<double>(after) - static_cast<double>(before)) / 1048576.0;
  std::printf("%d live threads after a 1 MB prose and a 1 MB word each: RSS %+.1f MB\n", kThreads,
              grown_mb);
  EXPECT_LT(grown_mb, 48.0);
}

}  // namespace
}  // namespace expertmesh::tokenizer
