#include "router/http/front_door.h"

#include <sys/resource.h>

#include <algorithm>
#include <exception>
#include <optional>
#include <thread>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/logging.h"
#include "router/http/front_door_state.h"
#include "router/http/http_session.h"

namespace expertmesh::router::http {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
constexpr auto kNoThrow = net::as_tuple(net::use_awaitable);

// Each connection needs a descriptor: raise the soft limit as far as allowed and keep the
// connection cap below it, so accept() never fails for want of descriptors that the router's
// own worker channels and files also need.
int ConnectionCapForDescriptors(int wanted) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return wanted;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  constexpr rlim_t kReserved = 256;
  if (limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur > static_cast<rlim_t>(wanted) + kReserved) {
    return wanted;
  }
  return std::max<int>(16, static_cast<int>(limit.rlim_cur) - static_cast<int>(kReserved));
}

void LogEscapedException(const std::string& name, std::exception_ptr error) {
  if (!error) return;
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    EM_LOG_WARN("{}: connection ended by an exception: {}", name, e.what());
  } catch (...) {
    EM_LOG_WARN("{}: connection ended by an unknown exception", name);
  }
}

}  // namespace

struct FrontDoor::Impl {
  Impl(FrontDoorOptions o, std::vector<Route> r, FrontDoorHooks h)
      : options(std::move(o)), routes(std::move(r)), hooks(std::move(h)) {
    options.limits.max_connections = ConnectionCapForDescriptors(options.limits.max_connections);
    state.emplace(options, routes, hooks);
    ioc.emplace(std::max(1, options.io_threads));
  }

  net::awaitable<void> Accept() {
    while (true) {
      auto [ec, socket] = co_await acceptor->async_accept(net::make_strand(*ioc), kNoThrow);
      if (ec) {
        if (ec == net::error::operation_aborted || !acceptor->is_open()) co_return;
        // Out of descriptors or memory: back off instead of spinning on the error.
        EM_LOG_WARN("{}: accept failed: {}", options.name, ec.message());
        net::steady_timer pause(acceptor->get_executor(), std::chrono::milliseconds(50));
        co_await pause.async_wait(kNoThrow);
        continue;
      }
      boost::system::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      const tcp::endpoint peer = socket.remote_endpoint(ignored);
      std::string client = peer.address().to_string();
      const net::any_io_executor ex = socket.get_executor();
      std::optional<ConnectionLimiter::Lease> lease = state->limiter.TryAcquire(client);
      auto log = [name = options.name](std::exception_ptr e) { LogEscapedException(name, e); };
      if (!lease.has_value()) {
        net::co_spawn(ex, RefuseConnection(*state, std::move(socket), ssl.has_value()), log);
        continue;
      }
      net::co_spawn(ex,
                    ServeConnection(*state, std::move(socket), ssl ? &*ssl : nullptr,
                                    std::move(*lease), std::move(client)),
                    log);
    }
  }

  FrontDoorOptions options;
  std::vector<Route> routes;
  FrontDoorHooks hooks;
  // Declared before the io_context: connections (destroyed with it) release leases and
  // reservations into the state.
  std::optional<FrontDoorState> state;
  std::optional<net::ssl::context> ssl;
  std::optional<net::io_context> ioc;
  std::optional<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;
  bool stopped = false;
};

FrontDoor::FrontDoor(FrontDoorOptions options, std::vector<Route> routes, FrontDoorHooks hooks)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(routes), std::move(hooks))) {}

FrontDoor::~FrontDoor() { Stop(); }

absl::StatusOr<int> FrontDoor::Start() {
  Impl& m = *impl_;
  const FrontDoorOptions& o = m.options;
  if (!o.tls_cert_file.empty() || !o.tls_key_file.empty()) {
    if (o.tls_cert_file.empty() || o.tls_key_file.empty()) {
      return absl::InvalidArgumentError("TLS needs both a certificate and a key file");
    }
    m.ssl.emplace(net::ssl::context::tls_server);
    m.ssl->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                       net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                       net::ssl::context::no_tlsv1_1 | net::ssl::context::single_dh_use);
    boost::system::error_code ec;
    m.ssl->use_certificate_chain_file(o.tls_cert_file, ec);
    if (ec) {
      return absl::InvalidArgumentError(absl::StrCat(
          "TLS certificate ", o.tls_cert_file, " is not a readable PEM chain: ", ec.message()));
    }
    m.ssl->use_private_key_file(o.tls_key_file, net::ssl::context::pem, ec);
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("TLS key ", o.tls_key_file, " is not a readable PEM key: ", ec.message()));
    }
  }

  boost::system::error_code ec;
  tcp::resolver resolver(*m.ioc);
  auto endpoints = resolver.resolve(o.host, std::to_string(o.port),
                                    tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || endpoints.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve HTTP host '", o.host, "': ", ec.message()));
  }
  const tcp::endpoint endpoint = endpoints.begin()->endpoint();
  m.acceptor.emplace(net::make_strand(*m.ioc));
  m.acceptor->open(endpoint.protocol(), ec);
  if (!ec) m.acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) m.acceptor->bind(endpoint, ec);
  if (!ec) m.acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    m.acceptor.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot bind ", o.name, " to ", o.host, ":", o.port, ": ", ec.message()));
  }
  const int port = m.acceptor->local_endpoint().port();

  net::co_spawn(m.acceptor->get_executor(), m.Accept(),
                [](std::exception_ptr e) { LogEscapedException("http accept", e); });
  for (int i = 0; i < std::max(1, o.io_threads); ++i) {
    m.threads.emplace_back([&m] {
      auto guard = net::make_work_guard(*m.ioc);
      m.ioc->run();
    });
  }
  return port;
}

void FrontDoor::Stop() {
  Impl& m = *impl_;
  if (m.stopped) return;
  m.stopped = true;
  if (m.acceptor.has_value()) {
    absl::Notification closed;
    net::post(m.acceptor->get_executor(), [&m, &closed] {
      boost::system::error_code ignored;
      m.acceptor->close(ignored);
      closed.Notify();
    });
    if (!m.threads.empty()) closed.WaitForNotification();
  }
  // No connection runs from here on; handlers still running see their client gone, return,
  // and their last wake-ups land in the stopped io_context, which outlives them.
  m.ioc->stop();
  for (std::thread& t : m.threads) t.join();
  m.threads.clear();
  // Ends the open responses and drops the state's references to them, so none of them (nor
  // the strand and timer its wake-up holds) outlives the io_context reset below.
  m.state->EndAll();
  m.state->executor.reset();  // joins the handler threads
  m.acceptor.reset();
  m.ioc.reset();  // destroys the connections' coroutines (and their leases)
}

int FrontDoor::open_connections() const { return impl_->state->limiter.open(); }

}  // namespace expertmesh::router::http
