// What a route handler of the HTTP front door sees: the request, read and checked in full
// (head limits, authorization, body size) before the handler runs, and a writer for the
// response, whole or streamed. Handlers run on the front door's handler threads and may block;
// the writer hands bytes to the connection's I/O thread.
#ifndef EXPERTMESH_ROUTER_HTTP_HTTP_EXCHANGE_H_
#define EXPERTMESH_ROUTER_HTTP_HTTP_EXCHANGE_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "router/cancel_token.h"

namespace expertmesh::router::http {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // the target without its query
  std::string query;   // after '?', undecoded
  HeaderList headers;  // names in lower case, in arrival order
  std::string body;
  std::string client_address;

  // The first value of a header (name in lower case), or "" when absent.
  std::string_view Header(std::string_view lowercase_name) const {
    for (const auto& [name, value] : headers) {
      if (name == lowercase_name) return value;
    }
    return {};
  }
};

// One response per request: either Respond, or BeginStream + Write... + EndStream. Calls come
// from one handler thread at a time.
class ResponseWriter {
 public:
  virtual ~ResponseWriter() = default;

  virtual void Respond(int status, std::string_view content_type, std::string body,
                       HeaderList headers = {}) = 0;

  // A response of unknown length (chunked): SSE streams.
  virtual void BeginStream(int status, std::string_view content_type, HeaderList headers = {}) = 0;
  // Queues `data` for the client. Blocks while the client is more than the front door's
  // pending-bytes limit behind; false once the client is gone (or stopped reading for longer
  // than the write timeout), after which the handler should stop producing.
  virtual bool Write(std::string_view data) = 0;
  virtual void EndStream() = 0;

  // Fired when the client disconnects or stops reading before the response is complete, and
  // when the server stops: a handler registers on it to cancel its work.
  virtual CancelToken& client_gone() = 0;
};

}  // namespace expertmesh::router::http

#endif  // EXPERTMESH_ROUTER_HTTP_HTTP_EXCHANGE_H_
