// Thread-local scratch vectors keep their capacity between calls, so tokenizing allocates
// nothing per word. A huge input must not pin its peak in every thread that ever saw one,
// though: a server tokenizes on many handler threads, and keeping a few tens of MB per thread
// per huge prompt grows it without bound in practice. TrimScratchOnExit gives the memory back
// when a call grew the vector past what ordinary prompts need.
#ifndef EXPERTMESH_MODEL_TOKENIZER_SCRATCH_H_
#define EXPERTMESH_MODEL_TOKENIZER_SCRATCH_H_

#include <cstddef>
#include <vector>

namespace expertmesh::tokenizer {

template <class T>
class TrimScratchOnExit {
 public:
  // What a prompt of tens of thousands of tokens needs; anything larger is given back.
  static constexpr size_t kKeepBytes = 1 << 20;

  explicit TrimScratchOnExit(std::vector<T>& scratch) : scratch_(scratch) {}
  ~TrimScratchOnExit() {
    if (scratch_.capacity() * sizeof(T) > kKeepBytes) std::vector<T>().swap(scratch_);
  }
  TrimScratchOnExit(const TrimScratchOnExit&) = delete;
  TrimScratchOnExit& operator=(const TrimScratchOnExit&) = delete;

 private:
  std::vector<T>& scratch_;
};

}  // namespace expertmesh::tokenizer

#endif  // EXPERTMESH_MODEL_TOKENIZER_SCRATCH_H_
