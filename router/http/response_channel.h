// The hand-off between a handler thread (the producer: ResponseWriter) and the connection's
// I/O coroutine (the consumer: Take). The producer never touches the socket: it queues bytes
// and calls `wake`, which only schedules the consumer; the consumer drains everything queued
// in one write, so a fast stream costs one wake-up per batch rather than per token.
//
// Thread safety: producer and consumer methods may run on different threads.
#ifndef EXPERTMESH_ROUTER_HTTP_RESPONSE_CHANNEL_H_
#define EXPERTMESH_ROUTER_HTTP_RESPONSE_CHANNEL_H_

#include <functional>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "router/http/http_exchange.h"

namespace expertmesh::router::http {

class ResponseChannel final : public ResponseWriter {
 public:
  // `wake` runs on the producer's thread after new output or the end; it must not block.
  ResponseChannel(size_t max_pending_bytes, absl::Duration write_timeout,
                  std::function<void()> wake);

  // ResponseWriter (producer side).
  void Respond(int status, std::string_view content_type, std::string body,
               HeaderList headers) override;
  void BeginStream(int status, std::string_view content_type, HeaderList headers) override;
  bool Write(std::string_view data) override;
  void EndStream() override;
  CancelToken& client_gone() override { return client_gone_; }

  // Called once the handler returned: a handler that answered nothing gets a 500, an open
  // stream is ended.
  void Finish();

  // Consumer side.
  struct Head {
    int status = 200;
    std::string content_type;
    HeaderList headers;
    bool streaming = false;
  };
  struct Output {
    std::optional<Head> head;  // once, with the first output
    std::string data;
    bool finished = false;  // nothing follows `data`
  };
  Output Take();
  // The client is gone (or the server stops): Write returns false from now on and
  // client_gone fires. Idempotent.
  void MarkGone();

 private:
  void WakeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetHeadLocked(Head head) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t max_pending_bytes_;
  const absl::Duration write_timeout_;
  const std::function<void()> wake_;
  CancelToken client_gone_;

  absl::Mutex mu_;
  std::optional<Head> head_ ABSL_GUARDED_BY(mu_);
  bool head_taken_ ABSL_GUARDED_BY(mu_) = false;
  std::string pending_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool gone_ ABSL_GUARDED_BY(mu_) = false;
  // A wake is scheduled and the consumer has not taken since: no need for another.
  bool wake_pending_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace expertmesh::router::http

#endif  // EXPERTMESH_ROUTER_HTTP_RESPONSE_CHANNEL_H_
