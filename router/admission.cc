#include "router/admission.h"

#include "absl/strings/str_cat.h"

namespace expertmesh::router {

absl::StatusOr<std::vector<Admission::Ticket>> Admission::Acquire(int slots, absl::Time deadline,
                                                                  CancelToken* cancel) {
  if (slots > max_active_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the request needs ", slots,
                     " concurrent generations; this server runs at most ", max_active_));
  }
  // Wakes the wait below when the request is cancelled (an empty critical section makes the
  // mutex re-check its conditions).
  CancelRegistration wake(cancel, [this] { absl::MutexLock lock(&mu_); });
  absl::MutexLock lock(&mu_);
  if (active_ + slots > max_active_) {
    if (queued_ >= max_queued_) {
      return absl::ResourceExhaustedError(absl::StrCat("server busy: ", active_,
                                                       " generations running and ", queued_,
                                                       " requests queued; retry later"));
    }
    ++queued_;
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return active_ + slots <= max_active_ || (cancel && cancel->cancelled());
    };
    const bool ok = mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
    --queued_;
    if (cancel && cancel->cancelled()) return absl::CancelledError("request cancelled");
    if (!ok) return absl::DeadlineExceededError("deadline passed while queued for a slot");
  }
  active_ += slots;
  std::vector<Ticket> tickets;
  for (int i = 0; i < slots; ++i) tickets.emplace_back(this);
  return tickets;
}

void Admission::Release() {
  absl::MutexLock lock(&mu_);
  --active_;
}

int Admission::active() const {
  absl::MutexLock lock(&mu_);
  return active_;
}

bool Admission::WaitIdle(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return active_ == 0 && queued_ == 0; };
  return mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
}

int Admission::queued() const {
  absl::MutexLock lock(&mu_);
  return queued_;
}

}  // namespace expertmesh::router
