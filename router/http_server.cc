#include "router/http_server.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "httplib.h"
#include "router/openai_handlers.h"
#include "router/openai_response.h"

namespace expertmesh::router {

HttpServer::HttpServer(RouterCore* core, const ApiKeys* keys, HttpServerOptions options)
    : core_(core), keys_(keys), options_(std::move(options)) {}

HttpServer::~HttpServer() { Stop(); }

absl::StatusOr<int> HttpServer::Start() {
  if (!options_.tls_cert_file.empty() || !options_.tls_key_file.empty()) {
    for (const std::string& f : {options_.tls_cert_file, options_.tls_key_file}) {
      if (f.empty() || !std::filesystem::exists(f)) {
        return absl::InvalidArgumentError(
            absl::StrCat("TLS needs both a certificate and a key file; cannot read '", f, "'"));
      }
    }
    auto tls = std::make_unique<httplib::SSLServer>(options_.tls_cert_file.c_str(),
                                                    options_.tls_key_file.c_str());
    if (!tls->is_valid()) {
      return absl::InvalidArgumentError(absl::StrCat("TLS certificate ", options_.tls_cert_file,
                                                     " or key ", options_.tls_key_file,
                                                     " is not valid PEM"));
    }
    server_ = std::move(tls);
  } else {
    server_ = std::make_unique<httplib::Server>();
  }
  const size_t threads = static_cast<size_t>(core_->options().max_active) + 32;
  server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server_->set_tcp_nodelay(true);
  server_->set_keep_alive_max_count(100000);
  // Idle keep-alive connections hold a pool thread and delay Stop() by up to this long.
  server_->set_keep_alive_timeout(2);
  server_->set_payload_max_length(core_->options().limits.max_request_bytes);
  Register();
  int port = options_.port == 0
                 ? server_->bind_to_any_port(options_.host)
                 : (server_->bind_to_port(options_.host, options_.port) ? options_.port : -1);
  if (port < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot bind HTTP to ", options_.host, ":", options_.port));
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  // Stop() before the listen loop runs would be lost (httplib's stop() is a no-op until then)
  // and join() would wait forever: return only once it runs.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!server_->is_running() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  if (!server_->is_running()) {
    return absl::InternalError("the HTTP server did not start listening within 30 s");
  }
  return port;
}

void HttpServer::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

void HttpServer::Register() {
  httplib::Server& s = *server_;
  auto json_error = [](httplib::Response& res, const absl::Status& status) {
    res.status = HttpStatusFor(status);
    if (res.status == 429 || res.status == 503) res.set_header("Retry-After", "1");
    res.set_content(Dump(ErrorJson(status)), "application/json");
  };
  // Errors httplib raises itself (413 body too large, 404 unknown path) get OpenAI's shape.
  s.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req,
                                                                  httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    absl::Status status;
    if (res.status == 413) {
      status = absl::InvalidArgumentError(absl::StrCat("request body too large; the limit is ",
                                                       core_->options().limits.max_request_bytes,
                                                       " bytes"));
    } else if (res.status == 404) {
      status = absl::NotFoundError(absl::StrCat("no route ", req.method, " ", req.path));
    } else {
      status = absl::UnknownError(absl::StrCat("HTTP ", res.status));
    }
    Json body = ErrorJson(status);
    if (res.status == 404) body["error"]["code"] = "not_found";
    if (res.status == 413) body["error"]["code"] = "request_too_large";
    res.set_content(Dump(body), "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));
  s.set_exception_handler(
      [json_error](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
        json_error(res, absl::InternalError("internal error while handling the request"));
      });
  auto authorized = [this, json_error](const httplib::Request& req, httplib::Response& res) {
    absl::Status status = keys_->Check(req.get_header_value("Authorization"));
    if (status.ok()) return true;
    json_error(res, status);
    core_->metrics().CountRequest("http", req.path, "401");
    return false;
  };
  for (bool chat : {false, true}) {
    const char* path = chat ? "/v1/chat/completions" : "/v1/completions";
    s.Post(path, [this, chat, authorized](const httplib::Request& req, httplib::Response& res) {
      if (!authorized(req, res)) return;
      HandleOpenAiGeneration(core_, chat, options_.request_timeout, req, res);
    });
  }
  s.Get("/v1/models", [this, authorized](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    const ModelDescription& d = core_->model().description();
    Json model{{"id", d.name},
               {"object", "model"},
               {"created", 0},
               {"owned_by", "expertmesh"},
               {"max_model_len", d.context_length}};
    res.set_content(Dump(Json{{"object", "list"}, {"data", Json::array({model})}}),
                    "application/json");
  });
  s.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  s.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    const bool ready = core_->Ready();
    res.status = ready ? 200 : 503;
    res.set_content(
        ready ? "ready\n" : (core_->draining() ? "draining\n" : "no healthy worker group\n"),
        "text/plain");
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(core_->metrics().Render(core_->pool().Groups(), core_->admission().active(),
                                            core_->admission().queued()),
                    "text/plain; version=0.0.4");
  });
}

}  // namespace expertmesh::router
