#include "worker/engine/grammar_masks.h"

#include <algorithm>
#include <chrono>

#include "common/logging.h"
#include "common/splitmix64.h"

namespace expertmesh::engine {
namespace {

bool IsStopId(const scheduler::ScheduledSequence& seq, int32_t token) {
  return std::find(seq.stop_token_ids.begin(), seq.stop_token_ids.end(), token) !=
         seq.stop_token_ids.end();
}

// The request's stop token ids end it as the grammar's eos ids do: allowed exactly where the
// grammar may end, whatever the grammar says of them as text.
void ApplyStopIds(const scheduler::ScheduledSequence& seq, std::span<uint32_t> mask) {
  if (seq.stop_token_ids.empty()) return;
  const bool may_end = seq.matcher->CanTerminate();
  for (int32_t t : seq.stop_token_ids) {
    const uint32_t bit = 1u << (t % 32);
    if (may_end) {
      mask[t / 32] |= bit;
    } else {
      mask[t / 32] &= ~bit;
    }
  }
}

bool AnySet(std::span<const uint32_t> mask) {
  return std::any_of(mask.begin(), mask.end(), [](uint32_t w) { return w != 0; });
}

// Selects the closing redraws' stream (CounterRandom keys streams by seed).
constexpr uint64_t kClosingStream = 0x636c6f73696e6721ULL;

}  // namespace

GrammarMasks::GrammarMasks(int64_t vocab_size)
    : vocab_size_(vocab_size), words_((vocab_size + 31) / 32) {}

GrammarMasks::~GrammarMasks() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void GrammarMasks::Start(const scheduler::StepPlan& plan) {
  rows_.clear();
  num_backend_rows_ = 0;
  for (bool backend : {true, false}) {
    int64_t row = 0;
    for (const scheduler::ScheduledSequence& s : plan.sequences) {
      if (!s.sample) continue;
      const int64_t r = row++;
      if (s.matcher == nullptr) continue;
      // The host sampler draws rows with penalties or logprobs: they keep their raw logits (for
      // logprobs) and get their mask there.
      const bool on_backend = !s.sampling->HasPenalties() && !s.sampling->logprobs;
      if (on_backend != backend) continue;
      rows_.push_back({.row = r, .seq = &s, .on_backend = on_backend});
      if (on_backend) ++num_backend_rows_;
    }
  }
  if (rows_.empty()) return;
  masks_.resize(rows_.size() * static_cast<size_t>(words_));
  if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
  ++fills_;
  absl::MutexLock lock(&mu_);
  pending_ = true;
}

void GrammarMasks::Wait() {
  if (rows_.empty()) return;
  const auto t0 = std::chrono::steady_clock::now();
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(this, &GrammarMasks::FillDone));
  wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

GrammarStats GrammarMasks::stats() const {
  absl::MutexLock lock(&mu_);
  return {.mask_fills = fills_, .fill_seconds = fill_seconds_, .wait_seconds = wait_seconds_};
}

void GrammarMasks::Run() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &GrammarMasks::HasWork));
      if (stop_) return;
    }
    const auto t0 = std::chrono::steady_clock::now();
    Fill();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    absl::MutexLock lock(&mu_);
    fill_seconds_ += seconds;
    pending_ = false;
  }
}

void GrammarMasks::Fill() {
  for (size_t i = 0; i < rows_.size(); ++i) {
    const scheduler::ScheduledSequence& s = *rows_[i].seq;
    const std::span<uint32_t> mask(masks_.data() + i * words_, static_cast<size_t>(words_));
    s.matcher->FillNextTokenBitmask(mask);
    ApplyStopIds(s, mask);
    if (!AnySet(mask)) {
      // A compiled grammar always allows a token or an end until it has ended, so this is a bug;
      // drawing from nothing would fail the whole step, so the row goes unconstrained and the
      // scheduler ends the request when its grammar refuses the token.
      EM_LOG_ERROR("engine: request {}: its grammar allows no token; drawing unconstrained",
                   s.request_id);
      std::fill(mask.begin(), mask.end(), ~uint32_t{0});
    }
  }
}

bool GrammarMasks::NeedsClosing(const scheduler::ScheduledSequence& seq, int32_t token) {
  if (seq.matcher->compiled().vocab().is_eos(token) || IsStopId(seq, token)) return false;
  const std::optional<int64_t> after = seq.matcher->MinBytesToCompleteAfter(token);
  // A forbidden token (only drawn from an unconstrained row, see Fill) is the scheduler's to
  // refuse; closing cannot help it.
  if (!after.has_value()) return false;
  // After `token`, tokens_left - 1 tokens remain for the rest of the text plus the end.
  return *after + 1 > seq.tokens_left - 1;
}

bool GrammarMasks::FillClosingMask(const scheduler::ScheduledSequence& seq,
                                   std::span<uint32_t> mask) {
  seq.matcher->FillClosingBitmask(mask, seq.tokens_left - 2);
  // An end of sequence is the one token a request with one token left may still take: allowed
  // wherever the grammar may end, whatever the budget.
  if (seq.matcher->CanTerminate()) {
    for (int32_t id : seq.matcher->compiled().vocab().eos_ids()) mask[id / 32] |= 1u << (id % 32);
  }
  ApplyStopIds(seq, mask);
  return AnySet(mask);
}

uint64_t GrammarMasks::ClosingSeed(uint64_t seed) { return CounterRandom(seed, kClosingStream); }

}  // namespace expertmesh::engine
