#include "router/http/http_session.h"

#include <sys/socket.h>

#include <chrono>
#include <iterator>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace expertmesh::router::http {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;

constexpr auto kNoThrow = net::as_tuple(net::use_awaitable);

// Debian's abseil has its own string_view type; Beast's converts to std's.
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }
absl::string_view Sv(beast::string_view s) { return absl::string_view(s.data(), s.size()); }

std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
  return absl::ToChronoNanoseconds(d);
}

// Reserved body bytes, released when the request is done with.
class BodyReservation {
 public:
  explicit BodyReservation(ByteBudget* budget) : budget_(budget) {}
  ~BodyReservation() {
    if (bytes_ > 0) budget_->Release(bytes_);
  }
  BodyReservation(const BodyReservation&) = delete;
  BodyReservation& operator=(const BodyReservation&) = delete;
  // Grows the reservation to at least `bytes`; false when the budget cannot give it.
  bool Cover(size_t bytes) {
    if (bytes <= bytes_) return true;
    constexpr size_t kStep = 64 * 1024;  // grow in steps: chunked bodies arrive in pieces
    const size_t want = (bytes + kStep - 1) / kStep * kStep - bytes_;
    if (!budget_->TryReserve(want)) return false;
    bytes_ += want;
    return true;
  }

 private:
  ByteBudget* budget_;
  size_t bytes_ = 0;
};

// An error the front door answers itself, before or instead of a handler.
struct Refusal {
  int status = 400;
  std::string code;
  std::string message;
  bool retry_after = false;
};

bool IsJsonContentType(std::string_view value) {
  const std::string_view media = value.substr(0, value.find(';'));
  return absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(Sv(media)), "application/json");
}

// Head checks in the order a client would want to learn about them: is the route there, may
// this client use it, is the body something we take.
std::optional<Refusal> CheckHead(const FrontDoorState& s,
                                 const bhttp::request<bhttp::empty_body>& req,
                                 std::string_view path, const Route** route) {
  const HttpLimits& limits = s.options.limits;
  if (std::distance(req.begin(), req.end()) > limits.max_header_fields) {
    return Refusal{431, "request_header_fields_too_large",
                   absl::StrCat("more than ", limits.max_header_fields, " header fields")};
  }
  bool path_known = false;
  *route = s.Match(std::string_view(req.method_string()), path, &path_known);
  if (*route == nullptr) {
    if (path_known) {
      return Refusal{
          405, "method_not_allowed",
          absl::StrCat("method ", Sv(req.method_string()), " not allowed on ", Sv(path))};
    }
    return Refusal{404, "not_found",
                   absl::StrCat("no route ", Sv(req.method_string()), " ", Sv(path))};
  }
  if ((*route)->needs_auth && s.hooks.authorize) {
    absl::Status auth = s.hooks.authorize(std::string_view(req[bhttp::field::authorization]));
    if (!auth.ok()) return Refusal{401, "invalid_api_key", std::string(auth.message())};
  }
  const std::string_view encoding(req[bhttp::field::content_encoding]);
  if (!encoding.empty() && !absl::EqualsIgnoreCase(Sv(encoding), "identity")) {
    return Refusal{415, "unsupported_media_type",
                   absl::StrCat("Content-Encoding '", Sv(encoding),
                                "' is not accepted: send the body uncompressed")};
  }
  if ((*route)->json_body && req.method() == bhttp::verb::post &&
      !IsJsonContentType(std::string_view(req[bhttp::field::content_type]))) {
    return Refusal{415, "unsupported_media_type",
                   "the body must be JSON, sent with 'Content-Type: application/json'"};
  }
  return std::nullopt;
}

template <class Stream>
beast::tcp_stream& Lowest(Stream& stream) {
  return beast::get_lowest_layer(stream);
}

template <class Stream>
net::awaitable<void> WriteRefusal(FrontDoorState& s, Stream& stream, std::string_view route,
                                  const Refusal& r, bool keep_alive) {
  bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(r.status), 11};
  res.set(bhttp::field::content_type, "application/json");
  if (r.retry_after) {
    res.set(bhttp::field::retry_after, std::to_string(s.options.retry_after_seconds));
  }
  res.body() = s.hooks.render_error ? s.hooks.render_error(r.status, r.code, r.message) : r.message;
  res.keep_alive(keep_alive);
  res.prepare_payload();
  if (s.hooks.count) s.hooks.count(route, r.status);
  Lowest(stream).expires_after(std::chrono::seconds(5));
  co_await bhttp::async_write(stream, res, kNoThrow);
}

// Reads from the client while a handler runs: an end of stream or error means the client is
// gone (its request is cancelled); bytes mean it pipelined its next request (kept, and the
// watch ends: a disconnect then shows on the next write).
struct Watch {
  explicit Watch(const net::any_io_executor& ex) : done(ex) {
    done.expires_at(net::steady_timer::time_point::max());
  }
  bool active = false;
  bool peer_closed = false;
  net::steady_timer done;
};

template <class Stream>
net::awaitable<void> WatchClient(Stream& stream, beast::flat_buffer& buffer,
                                 std::shared_ptr<Watch> watch,
                                 std::shared_ptr<ResponseChannel> channel) {
  auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), kNoThrow);
  if (!ec) {
    buffer.commit(n);
  } else if (ec != net::error::operation_aborted) {
    watch->peer_closed = true;
    channel->MarkGone();
  }
  watch->active = false;
  watch->done.cancel();
}

// Runs the handler and writes what it produces. Returns whether the connection may serve
// another request.
template <class Stream>
net::awaitable<bool> Respond(FrontDoorState& s, Stream& stream, beast::flat_buffer& buffer,
                             const Route& route, const std::shared_ptr<HttpRequest>& request,
                             const std::shared_ptr<BodyReservation>& reservation, bool keep_alive) {
  const HttpLimits& limits = s.options.limits;
  Refusal refusal;
  const net::any_io_executor ex = stream.get_executor();
  auto wake = std::make_shared<net::steady_timer>(ex);
  wake->expires_at(net::steady_timer::time_point::max());
  auto channel =
      std::make_shared<ResponseChannel>(limits.max_pending_response_bytes, limits.write_timeout,
                                        [wake, ex] { net::post(ex, [wake] { wake->cancel(); }); });
  bool submitted = true;
  if (route.run_inline) {
    route.handler(*request, *channel);
    channel->Finish();
  } else {
    submitted = s.executor->TrySubmit([&route, request, reservation, channel] {
      route.handler(*request, *channel);
      channel->Finish();
    });
  }
  if (!submitted) {
    refusal = Refusal{503, "overloaded", "the server is at capacity; retry later", true};
    co_await WriteRefusal(s, stream, route.path, refusal, keep_alive);
    co_return keep_alive;
  }
  s.Track(channel);

  auto watch = std::make_shared<Watch>(ex);
  Lowest(stream).expires_never();
  watch->active = true;
  net::co_spawn(ex, WatchClient(stream, buffer, watch, channel), net::detached);

  bool ok = true;
  bool streaming = false;
  std::optional<bhttp::response<bhttp::empty_body>> stream_head;
  std::optional<bhttp::response_serializer<bhttp::empty_body>> serializer;
  while (true) {
    ResponseChannel::Output out = channel->Take();
    const bool write = ok && !watch->peer_closed;
    if (out.head.has_value() && write) {
      const ResponseChannel::Head& head = *out.head;
      if (!head.streaming) {
        bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(head.status), 11};
        res.set(bhttp::field::content_type, head.content_type);
        for (const auto& [name, value] : head.headers) res.set(name, value);
        res.body() = std::move(out.data);
        res.keep_alive(keep_alive);
        res.prepare_payload();
        Lowest(stream).expires_after(ToChrono(limits.write_timeout));
        auto [ec, n] = co_await bhttp::async_write(stream, res, kNoThrow);
        ok = !ec;
        if (!ok) channel->MarkGone();
        // A whole response is always finished; wait for the handler's Finish below anyway.
      } else {
        stream_head.emplace(static_cast<bhttp::status>(head.status), 11);
        stream_head->set(bhttp::field::content_type, head.content_type);
        for (const auto& [name, value] : head.headers) stream_head->set(name, value);
        stream_head->keep_alive(keep_alive);
        stream_head->chunked(true);
        serializer.emplace(*stream_head);
        Lowest(stream).expires_after(ToChrono(limits.write_timeout));
        auto [ec, n] = co_await bhttp::async_write_header(stream, *serializer, kNoThrow);
        ok = !ec;
        if (!ok) channel->MarkGone();
        streaming = true;
        if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
          if (ok) {
            const int fd = stream.socket().native_handle();
            channel->EnableDirectSend([fd](const char* data, size_t size) -> long {
              return ::send(fd, data, size, MSG_NOSIGNAL | MSG_DONTWAIT);
            });
          }
        }
      }
    }
    if (streaming && !out.data.empty()) {  // chunk frames, from the channel
      if (ok && !watch->peer_closed) {
        Lowest(stream).expires_after(ToChrono(limits.write_timeout));
        auto [ec, n] = co_await net::async_write(
            stream, net::const_buffer(out.data.data(), out.data.size()), kNoThrow);
        ok = !ec;
        if (!ok) channel->MarkGone();
      }
      channel->WriteDone();
    }
    if (out.finished) break;
    if (!out.head.has_value() && out.data.empty()) {
      co_await wake->async_wait(kNoThrow);  // a post from the handler's Write or Finish
    }
  }
  // The socket may close once this returns: no direct send may be under way or follow.
  channel->DisableDirectSend();
  s.Untrack(channel.get());

  if (watch->active) {
    Lowest(stream).cancel();
    while (watch->active) co_await watch->done.async_wait(kNoThrow);
  }
  co_return ok&& keep_alive && !watch->peer_closed;
}

template <class Stream>
net::awaitable<void> ServeRequests(FrontDoorState& s, Stream& stream, const std::string& client) {
  const HttpLimits& limits = s.options.limits;
  // GCC 12 destroys temporaries inside a co_await's operands twice: every Refusal handed to
  // WriteRefusal is this named one.
  Refusal refusal;
  beast::flat_buffer buffer;
  for (int served = 0; served < limits.max_requests_per_connection; ++served) {
    if (buffer.size() == 0) {  // idle until the next request's first byte
      Lowest(stream).expires_after(
          ToChrono(served == 0 ? limits.head_timeout : limits.idle_timeout));
      auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), kNoThrow);
      if (ec) co_return;
      buffer.commit(n);
    }
    Lowest(stream).expires_after(ToChrono(limits.head_timeout));
    bhttp::request_parser<bhttp::empty_body> head_parser;
    head_parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
    // Content-Length is checked against the limit after routing and authorization, so an
    // unknown route or a missing key is what the client learns first.
    head_parser.body_limit(boost::none);
    auto [head_ec, head_n] =
        co_await bhttp::async_read_header(stream, buffer, head_parser, kNoThrow);
    if (head_ec == bhttp::error::header_limit) {
      refusal =
          Refusal{431, "request_header_fields_too_large",
                  absl::StrCat("request head larger than ", limits.max_header_bytes, " bytes")};
      co_await WriteRefusal(s, stream, "unmatched", refusal, false);
      co_return;
    }
    if (head_ec == beast::error::timeout) {
      refusal = Refusal{408, "request_timeout", "the request head took too long"};
      co_await WriteRefusal(s, stream, "unmatched", refusal, false);
      co_return;
    }
    if (head_ec == bhttp::error::end_of_stream || head_ec == net::error::eof ||
        head_ec == net::error::connection_reset) {
      co_return;
    }
    if (head_ec) {
      refusal = Refusal{400, "invalid_request",
                        absl::StrCat("malformed HTTP request: ", head_ec.message())};
      co_await WriteRefusal(s, stream, "unmatched", refusal, false);
      co_return;
    }

    const bhttp::request<bhttp::empty_body>& head = head_parser.get();
    const std::string_view target(head.target());
    const size_t q = target.find('?');
    const std::string_view path = target.substr(0, q);
    const Route* route = nullptr;
    // (Not an if-declaration: GCC 12 mishandles those around a co_await.)
    const std::optional<Refusal> head_refusal = CheckHead(s, head, path, &route);
    if (head_refusal.has_value()) {
      // The body (if any) is never read: the connection closes after the answer.
      const std::string_view route_name =
          route != nullptr ? std::string_view(route->path) : std::string_view("unmatched");
      co_await WriteRefusal(s, stream, route_name, *head_refusal, false);
      co_return;
    }

    const boost::optional<std::uint64_t> length = head_parser.content_length();
    if (length.has_value() && *length > limits.max_body_bytes) {
      refusal = Refusal{
          413, "request_too_large",
          absl::StrCat("request body too large; the limit is ", limits.max_body_bytes, " bytes")};
      co_await WriteRefusal(s, stream, route->path, refusal, false);
      co_return;
    }
    auto reservation = std::make_shared<BodyReservation>(&s.body_budget);
    if (length.has_value() && !reservation->Cover(static_cast<size_t>(*length))) {
      refusal = Refusal{503, "overloaded", "too many request bodies in flight; retry later", true};
      co_await WriteRefusal(s, stream, route->path, refusal, false);
      co_return;
    }
    if (absl::EqualsIgnoreCase(Sv(head[bhttp::field::expect]), "100-continue")) {
      bhttp::response<bhttp::empty_body> go_on{bhttp::status::continue_, 11};
      Lowest(stream).expires_after(ToChrono(limits.write_timeout));
      auto [ec, n] = co_await bhttp::async_write(stream, go_on, kNoThrow);
      if (ec) co_return;
    }

    bhttp::request_parser<bhttp::string_body> parser(std::move(head_parser));
    parser.body_limit(limits.max_body_bytes);
    Lowest(stream).expires_after(ToChrono(limits.body_timeout));
    while (!parser.is_done()) {
      auto [ec, n] = co_await bhttp::async_read_some(stream, buffer, parser, kNoThrow);
      if (ec == bhttp::error::body_limit) {
        refusal = Refusal{
            413, "request_too_large",
            absl::StrCat("request body too large; the limit is ", limits.max_body_bytes, " bytes")};
        co_await WriteRefusal(s, stream, route->path, refusal, false);
        co_return;
      }
      if (ec == beast::error::timeout) {
        refusal = Refusal{408, "request_timeout", "the request body took too long"};
        co_await WriteRefusal(s, stream, route->path, refusal, false);
        co_return;
      }
      if (ec) co_return;
      if (!reservation->Cover(parser.get().body().size())) {
        refusal =
            Refusal{503, "overloaded", "too many request bodies in flight; retry later", true};
        co_await WriteRefusal(s, stream, route->path, refusal, false);
        co_return;
      }
    }

    bhttp::request<bhttp::string_body> message = parser.release();
    auto request = std::make_shared<HttpRequest>();
    request->method = std::string(message.method_string());
    request->path = std::string(path);
    if (q != std::string_view::npos) request->query = std::string(target.substr(q + 1));
    for (const auto& field : message) {
      request->headers.emplace_back(absl::AsciiStrToLower(Sv(field.name_string())),
                                    std::string(field.value()));
    }
    request->body = std::move(message.body());
    request->client_address = client;
    const bool keep_alive = message.keep_alive() && served + 1 < limits.max_requests_per_connection;
    const bool more = co_await Respond(s, stream, buffer, *route, request, reservation, keep_alive);
    if (!more) co_return;
  }
}

}  // namespace

net::awaitable<void> ServeConnection(FrontDoorState& state, tcp::socket socket,
                                     net::ssl::context* ssl, ConnectionLimiter::Lease lease,
                                     std::string client) {
  const HttpLimits& limits = state.options.limits;
  if (ssl == nullptr) {
    beast::tcp_stream stream(std::move(socket));
    co_await ServeRequests(state, stream, client);
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream.close();
    co_return;
  }
  beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), *ssl);
  Lowest(stream).expires_after(ToChrono(limits.handshake_timeout));
  auto [ec] = co_await stream.async_handshake(net::ssl::stream_base::server, kNoThrow);
  if (!ec) {
    co_await ServeRequests(state, stream, client);
    Lowest(stream).expires_after(std::chrono::seconds(2));
    co_await stream.async_shutdown(kNoThrow);
  }
  Lowest(stream).close();
}

net::awaitable<void> RefuseConnection(FrontDoorState& state, tcp::socket socket, bool tls) {
  beast::tcp_stream stream(std::move(socket));
  Refusal refusal;
  if (!tls) {
    refusal = Refusal{503, "too_many_connections", "too many open connections; retry later", true};
    co_await WriteRefusal(state, stream, "unmatched", refusal, false);
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }
  stream.close();
}

}  // namespace expertmesh::router::http
