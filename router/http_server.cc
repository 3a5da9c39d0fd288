#include "router/http_server.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "router/openai_handlers.h"
#include "router/openai_response.h"

namespace expertmesh::router {
namespace {

// OpenAI's error object for what the front door answers itself.
std::string RenderFrontDoorError(int http_status, std::string_view code, std::string_view text) {
  const std::string message(text);
  absl::Status status;
  switch (http_status) {
    case 401:
      status = absl::UnauthenticatedError(message);
      break;
    case 404:
      status = absl::NotFoundError(message);
      break;
    case 503:
      status = absl::UnavailableError(message);
      break;
    default:
      status = absl::InvalidArgumentError(message);
  }
  Json body = ErrorJson(status);
  body["error"]["code"] = std::string(code);
  return Dump(body);
}

void Models(RouterCore* core, const http::HttpRequest& req, http::ResponseWriter& res) {
  const ModelDescription& d = core->model().description();
  Json model{{"id", d.name},
             {"object", "model"},
             {"created", d.created},
             {"owned_by", "expertmesh"},
             {"max_model_len", d.context_length}};
  constexpr std::string_view kOne = "/v1/models/";
  if (req.path.size() > kOne.size()) {
    const std::string id = req.path.substr(kOne.size());
    if (id != d.name) {
      Json body =
          ErrorJson(absl::NotFoundError(absl::StrCat("The model '", id, "' does not exist")));
      body["error"]["code"] = "model_not_found";
      body["error"]["param"] = "model";
      res.Respond(404, "application/json", Dump(body));
      core->metrics().CountRequest("http", "/v1/models/{id}", "404");
      return;
    }
    res.Respond(200, "application/json", Dump(model));
    core->metrics().CountRequest("http", "/v1/models/{id}", "200");
    return;
  }
  res.Respond(200, "application/json",
              Dump(Json{{"object", "list"}, {"data", Json::array({model})}}));
  core->metrics().CountRequest("http", "/v1/models", "200");
}

void Health(const http::HttpRequest&, http::ResponseWriter& res) {
  res.Respond(200, "text/plain", "ok\n");
}

void Ready(RouterCore* core, http::ResponseWriter& res) {
  const bool ready = core->Ready();
  res.Respond(ready ? 200 : 503, "text/plain",
              ready ? "ready\n" : (core->draining() ? "draining\n" : "no healthy worker group\n"));
}

void Metrics(RouterCore* core, http::ResponseWriter& res) {
  res.Respond(200, "text/plain; version=0.0.4",
              core->metrics().Render(core->pool().Groups(), core->admission().active(),
                                     core->admission().queued()));
}

// Probes and metrics: never blocking, so they run on the I/O threads and answer even when
// every handler thread is busy.
std::vector<http::Route> MonitoringRoutes(RouterCore* core, bool metrics_need_key) {
  std::vector<http::Route> routes;
  for (const char* path : {"/healthz", "/health"}) {
    routes.push_back({"GET", path, false, false, true, Health});
  }
  routes.push_back(
      {"GET", "/readyz", false, false, true,
       [core](const http::HttpRequest&, http::ResponseWriter& res) { Ready(core, res); }});
  routes.push_back(
      {"GET", "/metrics", metrics_need_key, false, true,
       [core](const http::HttpRequest&, http::ResponseWriter& res) { Metrics(core, res); }});
  return routes;
}

}  // namespace

HttpServer::HttpServer(RouterCore* core, const ApiKeys* keys, HttpServerOptions options)
    : core_(core), keys_(keys), options_(std::move(options)) {}

HttpServer::~HttpServer() { Stop(); }

absl::StatusOr<int> HttpServer::Start() {
  http::FrontDoorHooks hooks;
  hooks.authorize = [keys = keys_](std::string_view authorization) {
    return keys->Check(absl::string_view(authorization.data(), authorization.size()));
  };
  hooks.render_error = RenderFrontDoorError;
  hooks.count = [core = core_](std::string_view route, int status) {
    core->metrics().CountRequest("http", std::string(route), std::to_string(status));
  };

  http::FrontDoorOptions o;
  o.name = "http";
  o.host = options_.host;
  o.port = options_.port;
  o.tls_cert_file = options_.tls_cert_file;
  o.tls_key_file = options_.tls_key_file;
  o.limits = options_.limits;
  o.limits.max_body_bytes = core_->options().limits.max_request_bytes;
  o.io_threads = options_.io_threads;
  // A generation holds its handler thread while it waits for admission and while it runs.
  o.handler_threads = core_->options().max_active + core_->options().max_queued + 16;
  o.max_queued_handlers = 64;
  o.retry_after_seconds = core_->options().retry_after_seconds;

  std::vector<http::Route> routes = MonitoringRoutes(core_, /*metrics_need_key=*/true);
  for (bool chat : {false, true}) {
    routes.push_back({"POST", chat ? "/v1/chat/completions" : "/v1/completions", true, true, false,
                      [this, chat](const http::HttpRequest& req, http::ResponseWriter& res) {
                        HandleOpenAiGeneration(core_, *keys_, chat, options_.request_timeout, req,
                                               res);
                      }});
  }
  for (const char* path : {"/v1/models", "/v1/models/*"}) {
    routes.push_back({"GET", path, true, false, true,
                      [core = core_](const http::HttpRequest& req, http::ResponseWriter& res) {
                        Models(core, req, res);
                      }});
  }
  public_ = std::make_unique<http::FrontDoor>(o, std::move(routes), hooks);
  absl::StatusOr<int> port = public_->Start();
  if (!port.ok()) return port.status();

  if (options_.admin_port >= 0) {
    http::FrontDoorOptions a;
    a.name = "http-admin";
    a.host = options_.admin_host;
    a.port = options_.admin_port;
    a.limits.max_body_bytes = 0;
    a.limits.max_connections = 64;
    a.limits.max_connections_per_client = 0;
    a.io_threads = 1;
    a.handler_threads = 1;
    a.max_queued_handlers = 0;
    admin_ = std::make_unique<http::FrontDoor>(a, MonitoringRoutes(core_, false), hooks);
    absl::StatusOr<int> admin_port = admin_->Start();
    if (!admin_port.ok()) return admin_port.status();
    admin_port_ = *admin_port;
  }
  return *port;
}

void HttpServer::Stop() {
  if (public_) public_->Stop();
  if (admin_) admin_->Stop();
}

int HttpServer::open_connections() const { return public_ ? public_->open_connections() : 0; }

}  // namespace expertmesh::router
