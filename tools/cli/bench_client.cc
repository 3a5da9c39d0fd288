#include "tools/cli/bench_client.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "tools/cli/bench_sse.h"

namespace expertmesh::cli::bench {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string Excerpt(absl::string_view s) {
  constexpr size_t kMax = 200;
  std::string out(s.substr(0, kMax));
  for (char& c : out) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s.size() > kMax ? absl::StrCat(out, "...") : out;
}

// An OpenAI error object's message, or the start of whatever the body is.
std::string ErrorBodyMessage(const std::string& body) {
  const Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_discarded() && j.is_object()) {
    const auto error = j.find("error");
    if (error != j.end() && error->is_object()) {
      const auto m = error->find("message");
      if (m != error->end() && m->is_string()) return m->get<std::string>();
    }
  }
  return body.empty() ? "(empty body)" : Excerpt(body);
}

std::string RequestBody(const ClientOptions& o, const ScheduledRequest& r) {
  Json body = Json::object();
  if (!o.model.empty()) body["model"] = o.model;
  if (r.prompt_ids.empty()) {
    body["prompt"] = r.prompt_text;
  } else {
    body["prompt"] = r.prompt_ids;
  }
  body["max_tokens"] = r.max_tokens;
  body["temperature"] = o.temperature;
  if (o.ignore_eos) body["ignore_eos"] = true;
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  return body.dump();
}

struct Attempt {
  bool sent = false;  // httplib got a whole response
  httplib::Error error = httplib::Error::Success;
  int status = 0;
  size_t bytes = 0;
  std::string error_body;
  CompletionStream stream;
  std::optional<Clock::time_point> first_text, done_at;
  Clock::time_point last_byte;
};

void SendOnce(httplib::Client& client, const std::string& path, const ClientOptions& o,
              const std::string& body, Attempt* a) {
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body;
  req.set_header("Content-Type", "application/json");
  req.set_header("Accept", "text/event-stream");
  if (!o.api_key.empty()) req.set_header("Authorization", absl::StrCat("Bearer ", o.api_key));
  req.response_handler = [a](const httplib::Response& response) {
    a->status = response.status;
    return true;
  };
  req.content_receiver = [a](const char* data, size_t n, uint64_t, uint64_t) {
    const Clock::time_point now = Clock::now();
    a->bytes += n;
    a->last_byte = now;
    if (a->status != 200) {
      if (a->error_body.size() < 4096) a->error_body.append(data, std::min<size_t>(n, 4096));
      return true;
    }
    const int before = a->stream.text_chunks();
    const bool was_done = a->stream.done();
    a->stream.Feed(absl::string_view(data, n));
    if (before == 0 && a->stream.text_chunks() > 0) a->first_text = now;
    if (!was_done && a->stream.done()) a->done_at = now;
    return true;
  };
  httplib::Response response;
  a->sent = client.send(req, response, a->error);
  if (a->sent) a->status = response.status;
}

// httplib's own names ("Connection", "Read") say little to a person reading a report.
std::string Describe(httplib::Error e) {
  switch (e) {
    case httplib::Error::Connection:
      return "could not connect (connection refused or host unreachable)";
    case httplib::Error::ConnectionTimeout:
      return "connecting timed out";
    case httplib::Error::BindIPAddress:
      return "could not bind the local address";
    case httplib::Error::Read:
      return "reading the response failed (connection closed or reset)";
    case httplib::Error::Write:
      return "sending the request failed (connection closed or reset)";
    case httplib::Error::SSLConnection:
      return "the TLS handshake failed";
    case httplib::Error::SSLLoadingCerts:
      return "loading the CA certificates failed";
    case httplib::Error::SSLServerVerification:
      return "the server's TLS certificate did not verify (--insecure skips the check)";
    default:
      return absl::StrCat("HTTP client error ", httplib::to_string(e));
  }
}

bool IsConnectError(httplib::Error e) {
  return e == httplib::Error::Connection || e == httplib::Error::ConnectionTimeout ||
         e == httplib::Error::SSLConnection || e == httplib::Error::BindIPAddress;
}

RequestResult Send(httplib::Client& client, const std::string& path, const ClientOptions& o,
                   const ScheduledRequest& r, Clock::time_point schedule_start,
                   Clock::time_point scheduled) {
  RequestResult res;
  res.max_tokens = r.max_tokens;
  const std::string body = RequestBody(o, r);
  const Clock::time_point sent = Clock::now();
  res.send_lag_s = std::max(0.0, Seconds(sent - scheduled));
  Attempt a;
  for (int attempt = 0;; ++attempt) {
    a = Attempt();
    const Clock::time_point attempt_start = Clock::now();
    a.last_byte = attempt_start;
    SendOnce(client, path, o, body, &a);
    const bool nothing_back = a.status == 0 && a.bytes == 0;
    const bool retryable = !a.sent && nothing_back &&
                           (IsConnectError(a.error) || a.error == httplib::Error::Read ||
                            a.error == httplib::Error::Write) &&
                           Seconds(Clock::now() - attempt_start) < o.request_timeout_s * 0.9;
    if (!retryable || attempt >= o.connect_retries) break;
    ++res.retries;
  }
  const Clock::time_point end = Clock::now();
  res.end_s = Seconds(end - schedule_start);
  res.e2e_s = Seconds(end - sent);
  const std::string where =
      absl::StrCat(o.endpoint.ToString(),
                   res.retries > 0 ? absl::StrCat(", after ", res.retries, " retries") : "");
  if (!a.sent) {
    // No byte for request_timeout_s (httplib reports a read timeout as a read error).
    const bool timed_out = Seconds(end - a.last_byte) >= o.request_timeout_s * 0.99;
    if (timed_out) {
      res.error_kind = "timeout";
      res.error = absl::StrCat("no response byte for ", o.request_timeout_s, " s (", where, ")");
    } else if (a.status == 0 && a.bytes == 0) {
      res.error_kind = "connection";
      res.error = absl::StrCat(Describe(a.error), " (", where, ")");
    } else {
      res.error_kind = "incomplete stream";
      res.error = absl::StrCat(Describe(a.error), " after ", a.bytes, " bytes of the response (",
                               where, ")");
    }
    return res;
  }
  if (a.status != 200) {
    res.error_kind = absl::StrCat("http ", a.status);
    res.error = absl::StrCat("HTTP ", a.status, ": ", ErrorBodyMessage(a.error_body));
    return res;
  }
  a.stream.Finish();
  switch (a.stream.problem()) {
    case CompletionStream::Problem::kNone:
      break;
    case CompletionStream::Problem::kErrorEvent:
      res.error_kind = "stream error";
      res.error = a.stream.problem_message();
      return res;
    case CompletionStream::Problem::kMalformed:
      res.error_kind = "malformed stream";
      res.error = a.stream.problem_message();
      return res;
    case CompletionStream::Problem::kIncomplete:
      res.error_kind = "incomplete stream";
      res.error = a.stream.problem_message();
      return res;
  }
  res.ok = true;
  const Clock::time_point finished = a.done_at.value_or(end);
  res.e2e_s = Seconds(finished - sent);
  res.end_s = Seconds(finished - schedule_start);
  // A stream whose text was all empty (possible for a few odd tokens) has its first token
  // no earlier than its end.
  res.ttft_s = Seconds(a.first_text.value_or(finished) - sent);
  if (a.stream.completion_tokens().has_value()) {
    res.output_tokens = *a.stream.completion_tokens();
    res.tokens_from_usage = true;
  } else {
    res.output_tokens = a.stream.text_chunks();
  }
  res.prompt_tokens = a.stream.prompt_tokens().value_or(0);
  res.cached_tokens = a.stream.cached_tokens().value_or(0);
  return res;
}

}  // namespace

std::string Endpoint::Origin() const {
  const bool v6 = host.find(':') != std::string::npos;
  return absl::StrCat(https ? "https://" : "http://", v6 ? "[" : "", host, v6 ? "]" : "", ":",
                      port);
}

std::string Endpoint::ToString() const { return Origin() + base_path; }

absl::StatusOr<Endpoint> ParseUrl(absl::string_view url) {
  absl::string_view rest = absl::StripAsciiWhitespace(url);
  Endpoint e;
  if (absl::StartsWithIgnoreCase(rest, "https://")) {
    e.https = true;
    e.port = 443;
    rest.remove_prefix(8);
  } else if (absl::StartsWithIgnoreCase(rest, "http://")) {
    rest.remove_prefix(7);
  } else if (rest.find("://") != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("'", url, "': only http:// and https:// URLs"));
  }
  const size_t slash = rest.find('/');
  absl::string_view authority = rest.substr(0, slash);
  absl::string_view path = slash == absl::string_view::npos ? "" : rest.substr(slash);
  if (authority.empty()) return absl::InvalidArgumentError(absl::StrCat("'", url, "': no host"));
  absl::string_view host = authority;
  if (authority.front() == '[') {  // [::1]:8000
    const size_t close = authority.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("'", url, "': unclosed '['"));
    }
    host = authority.substr(1, close - 1);
    authority.remove_prefix(close + 1);
  } else {
    const size_t colon = authority.rfind(':');
    host = authority.substr(0, colon);
    authority = colon == absl::string_view::npos ? "" : authority.substr(colon);
  }
  if (!authority.empty()) {
    int port = 0;
    if (authority.front() != ':' || !absl::SimpleAtoi(authority.substr(1), &port) || port < 1 ||
        port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("'", url, "': bad port"));
    }
    e.port = port;
  }
  if (host.empty()) return absl::InvalidArgumentError(absl::StrCat("'", url, "': no host"));
  e.host = std::string(host);
  while (absl::ConsumeSuffix(&path, "/")) {
  }
  absl::ConsumeSuffix(&path, "/v1");
  e.base_path = std::string(path);
  return e;
}

std::vector<RequestResult> RunSchedule(const ClientOptions& options, const Schedule& schedule) {
  const size_t n = schedule.requests.size();
  std::vector<RequestResult> results(n);
  if (n == 0) return results;
  const size_t workers =
      std::clamp<size_t>(static_cast<size_t>(std::max(options.max_concurrency, 1)), 1, n);
  const std::string path = options.endpoint.base_path + "/v1/completions";
  std::atomic<size_t> next{0};
  // The clock starts once every client is made, so making them is no part of any request's
  // send lag.
  Clock::time_point start;
  absl::Notification go;
  std::vector<std::thread> threads;
  threads.reserve(workers);
  for (size_t w = 0; w < workers; ++w) {
    threads.emplace_back([&] {
      // The scheme://host:port form makes an SSL client for https.
      httplib::Client client(options.endpoint.Origin());
      client.enable_server_certificate_verification(options.verify_tls);
      const auto whole = [](double s) { return static_cast<time_t>(s); };
      const auto micros = [](double s) {
        return static_cast<time_t>((s - static_cast<double>(static_cast<time_t>(s))) * 1e6);
      };
      client.set_connection_timeout(whole(options.connect_timeout_s),
                                    micros(options.connect_timeout_s));
      client.set_read_timeout(whole(options.request_timeout_s), micros(options.request_timeout_s));
      client.set_write_timeout(whole(options.request_timeout_s), micros(options.request_timeout_s));
      go.WaitForNotification();
      // Requests are taken in arrival order; a free client waits for the next one's arrival.
      for (size_t i; (i = next.fetch_add(1)) < n;) {
        const Clock::time_point scheduled =
            start + std::chrono::duration_cast<Clock::duration>(
                        std::chrono::duration<double>(schedule.requests[i].arrival_s));
        std::this_thread::sleep_until(scheduled);
        results[i] = Send(client, path, options, schedule.requests[i], start, scheduled);
      }
    });
  }
  start = Clock::now();
  go.Notify();
  for (std::thread& t : threads) t.join();
  return results;
}

}  // namespace expertmesh::cli::bench
