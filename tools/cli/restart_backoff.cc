#include "tools/cli/restart_backoff.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace expertmesh::cli {

absl::Status RestartBackoffOptions::Validate() const {
  if (initial_delay <= absl::ZeroDuration() || max_delay < initial_delay ||
      reset_after < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "restart backoff: need 0 < initial delay (", absl::FormatDuration(initial_delay),
        ") <= max delay (", absl::FormatDuration(max_delay), ") and reset after (",
        absl::FormatDuration(reset_after), ") >= 0"));
  }
  return absl::OkStatus();
}

RestartBackoff::RestartBackoff(RestartBackoffOptions options)
    : options_(options), next_delay_(options.initial_delay) {}

void RestartBackoff::OnReady(absl::Time at) { ready_since_ = at; }

absl::Duration RestartBackoff::OnFailure(absl::Time at) {
  if (ready_since_.has_value() && at - *ready_since_ >= options_.reset_after) {
    next_delay_ = options_.initial_delay;
    consecutive_failures_ = 0;
  }
  ready_since_.reset();
  ++consecutive_failures_;
  const absl::Duration delay = next_delay_;
  next_delay_ = std::min(next_delay_ * 2, options_.max_delay);
  return delay;
}

}  // namespace expertmesh::cli
