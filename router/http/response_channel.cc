#include "router/http/response_channel.h"

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"

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

bool ResponseChannel::SendOrQueueLocked(std::string_view frame) {
  size_t sent = 0;
  if (direct_send_ && pending_.empty() && !io_writing_) {
    while (sent < frame.size()) {
      const long n = direct_send_(frame.data() + sent, frame.size() - sent);
      if (n > 0) {
        sent += static_cast<size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        break;  // the socket is full: the I/O thread takes the rest when it drains
      } else {
        return false;
      }
    }
    if (sent == frame.size()) return true;
  }
  pending_.append(frame.data() + sent, frame.size() - sent);
  WakeLocked();
  return true;
}

bool ResponseChannel::Write(std::string_view data) {
  if (data.empty()) return true;  // an empty chunk would end the stream
  const std::string frame = absl::StrCat(absl::Hex(data.size()), "\r\n",
                                         absl::string_view(data.data(), data.size()), "\r\n");
  bool failed = false;
  {
    absl::MutexLock lock(&mu_);
    if (gone_) return false;
    if (!head_.has_value() || !head_->streaming || finished_) return false;
    auto has_room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return gone_ || pending_.size() < max_pending_bytes_;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&has_room), write_timeout_)) {
      failed = true;  // the client has not read for the whole write timeout
    } else if (gone_) {
      return false;
    } else if (SendOrQueueLocked(frame)) {
      return true;
    } else {
      failed = true;
    }
  }
  if (failed) MarkGone();
  return false;
}

void ResponseChannel::EndStream() {
  bool failed = false;
  {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    if (!gone_ && head_.has_value() && head_->streaming) failed = !SendOrQueueLocked("0\r\n\r\n");
    finished_ = true;
    WakeLocked();
  }
  if (failed) MarkGone();
}

void ResponseChannel::Finish() {
  {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    if (head_.has_value()) {
      if (!head_->streaming) return;  // unreachable: a whole response is finished
    } else {
      SetHeadLocked(Head{500, "application/json", {}, false});
      pending_ = R"({"error":{"message":"the server produced no response","type":"server_error",)"
                 R"("param":null,"code":"internal_error"}})";
      finished_ = true;
      WakeLocked();
      return;
    }
  }
  EndStream();
}

void ResponseChannel::WriteDone() {
  absl::MutexLock lock(&mu_);
  io_writing_ = false;
}

void ResponseChannel::EnableDirectSend(std::function<long(const char*, size_t)> send) {
  absl::MutexLock lock(&mu_);
  direct_send_ = std::move(send);
}

void ResponseChannel::DisableDirectSend() {
  absl::MutexLock lock(&mu_);  // waits out a send in progress
  direct_send_ = nullptr;
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
    io_writing_ = head_->streaming && !out.data.empty();
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
