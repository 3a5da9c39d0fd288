// The hand-off between a handler thread (the producer: ResponseWriter) and the connection's
// I/O coroutine (the consumer: Take). The producer queues bytes and calls `wake`, which only
// schedules the consumer; the consumer drains everything queued in one write, so a busy
// stream costs one wake-up per batch rather than per token. Streams are framed here (HTTP/1.1
// chunks). Once a plain-TCP stream's head is out, the consumer may allow direct sends: while
// nothing is queued and no write is in flight, the producer hands a chunk to the socket itself
// with a non-blocking send, and only what the socket does not take at once is queued for the
// I/O thread. A token then costs one send, as on a thread-per-connection server, without
// giving up the I/O thread's deadlines for clients that stop reading.
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
    // A whole response's body, or a stream's next bytes, already chunk-framed.
    std::string data;
    bool finished = false;  // nothing follows `data`
  };
  // Everything new. When it returns stream bytes, the producer queues behind them until
  // WriteDone.
  Output Take();
  void WriteDone();
  // `send` (non-blocking, ::send's result and errno) may be called by the producer from now
  // until DisableDirectSend returns; DisableDirectSend before the socket may close.
  void EnableDirectSend(std::function<long(const char* data, size_t size)> send);
  void DisableDirectSend();
  // The client is gone (or the server stops): Write returns false from now on and
  // client_gone fires. Idempotent.
  void MarkGone();

 private:
  void WakeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends `frame` directly when allowed and nothing is ahead of it, else queues (the rest of)
  // it. False when the socket failed.
  bool SendOrQueueLocked(std::string_view frame) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
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
  bool io_writing_ ABSL_GUARDED_BY(mu_) = false;
  std::function<long(const char*, size_t)> direct_send_ ABSL_GUARDED_BY(mu_);
  // A wake is scheduled and the consumer has not taken since: no need for another.
  bool wake_pending_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace expertmesh::router::http

#endif  // EXPERTMESH_ROUTER_HTTP_RESPONSE_CHANNEL_H_
