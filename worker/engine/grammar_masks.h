// Constrained decoding in the engine's step: the token masks of the step's rows whose request
// has a grammar, filled on a helper thread while the forward pass runs, and the budget check
// that closes an output in time.
//
// Masks: each constrained row gets its matcher's FillNextTokenBitmask, with the request's stop
// token ids treated as the grammar's eos ids (allowed exactly where the grammar may end).
// Budget closing: a row drawn from its mask may take a token after which the grammar can no
// longer complete, its end of sequence included, within the tokens the request has left. Then
// the engine redraws the row from the closing mask (FillClosingBitmask with the bytes those
// tokens can carry: every byte has a one-byte token in byte-level BPE, so bytes bound tokens)
// with an independent random stream. The draw stays proportional to the model's probabilities
// over the tokens that keep the budget (rejection sampling), and a constrained output always
// completes and ends with an end of sequence unless max_tokens cannot hold even the shortest
// completion.
//
// A step without constrained rows costs a scan of the plan: no thread, no allocation.
// Thread safety: one engine thread calls every method; the helper thread reads the plan's
// matchers only between Start() and Wait(), when nothing else touches them.
#ifndef EXPERTMESH_WORKER_ENGINE_GRAMMAR_MASKS_H_
#define EXPERTMESH_WORKER_ENGINE_GRAMMAR_MASKS_H_

#include <cstdint>
#include <optional>
#include <span>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "worker/scheduler/step_plan.h"

namespace expertmesh::engine {

// Where constrained decoding's time goes (for benchmarks and metrics).
struct GrammarStats {
  uint64_t mask_fills = 0;       // steps whose masks were filled
  double fill_seconds = 0;       // on the helper thread, overlapping the forward pass
  double wait_seconds = 0;       // the engine thread blocked in Wait(): what the overlap missed
  uint64_t closing_checks = 0;   // rows whose token needed the closing mask
  uint64_t closing_redraws = 0;  // ... and were redrawn from it
  // On the engine thread: budget checks of every constrained row, closing masks and redraws;
  // and the masks' upload and Backend::MaskLogits.
  double closing_seconds = 0;
  double masking_seconds = 0;
};

class GrammarMasks {
 public:
  // One constrained sampling row of the step.
  struct Row {
    int64_t row = 0;  // index among the plan's sampling rows (= its logits row)
    const scheduler::ScheduledSequence* seq = nullptr;
    bool on_backend = false;  // drawn by Backend::SampleTokens (else by the host sampler)
  };

  // `vocab_size`: the model's logits rows (every grammar is compiled for it).
  explicit GrammarMasks(int64_t vocab_size);
  // Joins the helper thread.
  ~GrammarMasks();
  GrammarMasks(const GrammarMasks&) = delete;
  GrammarMasks& operator=(const GrammarMasks&) = delete;

  // Starts filling the masks of `plan`'s constrained sampling rows on the helper thread (started
  // on first use). `plan` must stay alive and unchanged until Wait(). Rows the backend draws
  // (no penalties, no logprobs) come first in rows(). REQUIRES: no fill in progress.
  void Start(const scheduler::StepPlan& plan);
  // Waits for the fill Start() began; returns at once when there is none.
  void Wait();

  // After Wait(): the constrained rows, and the mask of rows()[i].
  std::span<const Row> rows() const { return rows_; }
  int64_t num_backend_rows() const { return num_backend_rows_; }
  std::span<const uint32_t> mask(size_t i) const {
    return {masks_.data() + i * words_, static_cast<size_t>(words_)};
  }
  // The masks of the first num_backend_rows() rows, one after another (Backend::MaskLogits).
  std::span<const uint32_t> backend_masks() const {
    return {masks_.data(), static_cast<size_t>(num_backend_rows_ * words_)};
  }
  int64_t words() const { return words_; }
  // Fill and wait times so far (closing_* are the engine's to count).
  GrammarStats stats() const;

  // Whether `token`, just drawn for `seq`, leaves its grammar unable to complete (end of
  // sequence included) within the tokens left after it: then the row must be redrawn from
  // FillClosingMask. Ends of sequence never need it.
  static bool NeedsClosing(const scheduler::ScheduledSequence& seq, int32_t token);
  // The tokens that keep the budget after them (seq.tokens_left - 2 bytes: one token is the one
  // drawn now, one the end of sequence). False when there is none (then the normal draw stays).
  static bool FillClosingMask(const scheduler::ScheduledSequence& seq, std::span<uint32_t> mask);
  // The seed of a request's closing redraws: an independent stream of its seed, so a redraw
  // never reuses the uniform its rejected draw used.
  static uint64_t ClosingSeed(uint64_t seed);

 private:
  void Fill();
  void Run();
  bool FillDone() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !pending_; }
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return pending_ || stop_; }

  const int64_t vocab_size_;
  const int64_t words_;
  std::vector<Row> rows_;
  int64_t num_backend_rows_ = 0;
  std::vector<uint32_t> masks_;  // [rows_.size(), words_]
  uint64_t fills_ = 0;
  double wait_seconds_ = 0;

  std::thread thread_;  // started by the first Start() with constrained rows
  mutable absl::Mutex mu_;
  bool pending_ ABSL_GUARDED_BY(mu_) = false;  // a fill is queued or running
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  double fill_seconds_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace expertmesh::engine

#endif  // EXPERTMESH_WORKER_ENGINE_GRAMMAR_MASKS_H_
