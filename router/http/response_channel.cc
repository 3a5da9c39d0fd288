#include "router/http/response_channel.h"

#include <utility>

namespace expertmesh::router::http {

ResponseChannel::ResponseChannel(size_t max_pending_bytes, absl::Duration write_timeout,
                                 std::function<void()> wake)
    : max_pending_bytes_(max_pending_bytes),
      write_timeout_(write_timeout),
      wake_(std::move(wake)) {}

void ResponseChannel::WakeLocked() {
  if (wake_pending_) return;
  wake_pending_ = true;
  wake_();
}

void ResponseChannel::SetHeadLocked(Head head) {
  if (head_.has_value()) return;  // one response per request; a second is a handler bug
  head_ = std::move(head);
}

void ResponseChannel::Respond(int status, std::string_view content_type, std::string body,
                              HeaderList headers) {
  absl::MutexLock lock(&mu_);
  if (head_.has_value() || finished_) return;
  SetHeadLocked(Head{status, std::string(content_type), std::move(headers), false});
  pending_ = std::move(body);
  finished_ = true;
  WakeLocked();
}

void ResponseChannel::BeginStream(int status, std::string_view content_type, HeaderList headers) {
  absl::MutexLock lock(&mu_);
  if (head_.has_value() || finished_) return;
  SetHeadLocked(Head{status, std::string(content_type), std::move(headers), true});
  WakeLocked();
}

bool ResponseChannel::Write(std::string_view data) {
  bool timed_out = false;
  {
    absl::MutexLock lock(&mu_);
    if (gone_) return false;
    if (!head_.has_value() || !head_->streaming || finished_) return false;
    auto has_room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return gone_ || pending_.size() < max_pending_bytes_;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&has_room), write_timeout_)) {
      timed_out = true;  // the client has not read for the whole write timeout
    } else if (!gone_) {
      pending_.append(data);
      WakeLocked();
      return true;
    }
  }
  if (timed_out) MarkGone();
  return false;
}

void ResponseChannel::EndStream() {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  finished_ = true;
  WakeLocked();
}

void ResponseChannel::Finish() {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  if (!head_.has_value()) {
    SetHeadLocked(Head{500, "application/json", {}, false});
    pending_ = R"({"error":{"message":"the server produced no response","type":"server_error",)"
               R"("param":null,"code":"internal_error"}})";
  }
  finished_ = true;
  WakeLocked();
}

ResponseChannel::Output ResponseChannel::Take() {
  absl::MutexLock lock(&mu_);
  Output out;
  wake_pending_ = false;
  if (head_.has_value() && !head_taken_) {
    out.head = *head_;
    head_taken_ = true;
  }
  if (head_taken_) {
    out.data.swap(pending_);
    out.finished = finished_;
  }
  return out;
}

void ResponseChannel::MarkGone() {
  {
    absl::MutexLock lock(&mu_);
    if (gone_) return;
    gone_ = true;
    pending_.clear();
  }
  // Outside mu_: the callbacks cancel the handler's work, which may call back into Write.
  client_gone_.Cancel();
}

}  // namespace expertmesh::router::http
