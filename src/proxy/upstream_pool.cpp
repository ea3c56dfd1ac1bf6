#include "proxy/upstream_pool.hpp"

#include "metrics/record.hpp"
#include "net/tls.hpp"
#include "proxy/backend_errors.hpp"
#include "proxy/h2_upstream.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>

namespace hipache::proxy {

namespace {
using boost::system::error_code;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
}  // namespace

UpstreamPool::UpstreamPool(asio::any_io_executor executor, unsigned max_sockets, bool keep_alive,
                           std::chrono::seconds timeout, bool verify_backend_tls)
    : executor_(executor),
      max_sockets_(std::max(1u, max_sockets)),
      keep_alive_(keep_alive),
      timeout_(timeout),
      verify_backend_tls_(verify_backend_tls),
      watch_timer_(executor_) {}

UpstreamPool::~UpstreamPool() {
  // An idle HTTP/2 session's coroutines may outlive the pool: they must not call back into it.
  for (auto& [key, slot] : backends_) {
    for (auto& idle : slot.idle) {
      if (idle.h2) idle.h2->close();
    }
  }
}

namespace {

// Whether an idle pooled connection can still carry a request: no close and no stray bytes from
// the backend so far. One non-blocking peek, nothing consumed.
bool still_open(UpstreamConnection& connection) {
  char byte = 0;
  const auto n =
      ::recv(connection.stream.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

asio::awaitable<UpstreamPool::Acquired> UpstreamPool::acquire(const Backend& backend,
                                                              bool allow_reuse, bool replayable) {
  const auto deadline = timeout_.count() > 0 ? asio::steady_timer::clock_type::now() + timeout_
                                             : asio::steady_timer::time_point::max();
  // At most maxSockets connections in use per backend; beyond, wait in line.
  auto& slot = backends_[backend.pool_key];  // unordered_map references survive rehashing
  if (slot.in_use < max_sockets_ && slot.waiters.empty()) {
    ++slot.in_use;
  } else {
    bool granted = false;
    asio::steady_timer wake(executor_, deadline);
    slot.waiters.push_back({&wake, &granted});
    co_await wake.async_wait(kUseTuple);
    if (!granted) {  // the deadline passed first
      std::erase_if(slot.waiters, [&](const PerBackend::Waiter& w) { return w.wake == &wake; });
      co_return Acquired{Failure::pool_exhausted, nullptr, nullptr};
    }
  }

  while (allow_reuse && !slot.idle.empty()) {
    // The most recently used connection: the least likely to have been closed by the backend.
    const bool watched = slot.idle.back().watched;
    auto connection = std::move(slot.idle.back().connection);
    auto h2 = std::move(slot.idle.back().h2);
    slot.idle.pop_back();
    if (h2) {
      h2->unpark();
      if (!h2->reusable()) {  // (a GOAWAY read just now, not yet acted on)
        h2->close();
        continue;
      }
      h2->connection().reused = true;
      h2->connection().slot_held = true;
      co_return Acquired{std::nullopt, nullptr, std::move(h2)};
    }
    if (watched) {
      error_code ignored;
      connection->stream.socket().cancel(ignored);  // stops its idle watch
    } else if (!replayable && !still_open(*connection)) {
      continue;  // closed before its watch began: dropped (destroying it closes it)
    }
    connection->reused = true;
    connection->slot_held = true;
    co_return Acquired{std::nullopt, std::move(connection), nullptr};
  }

  if (backend.tls && !backend_tls_) backend_tls_ = net::make_backend_tls(verify_backend_tls_);
  auto connection = std::make_unique<UpstreamConnection>(
      backend.tls ? net::AnyStream(net::TcpStream(executor_), *backend_tls_)
                  : net::AnyStream(net::TcpStream(executor_)));
  connection->key = backend.pool_key;
  connection->slot_held = true;
  error_code ec;
  asio::ip::tcp::resolver::results_type endpoints;
  const auto address = asio::ip::make_address(backend.host, ec);
  const bool host_is_ip = !ec;
  if (!ec) {
    endpoints = asio::ip::tcp::resolver::results_type::create(
        asio::ip::tcp::endpoint(address, backend.port), backend.host, std::to_string(backend.port));
  } else {
    // A slow name server must not hold the request longer than a connect would.
    using namespace asio::experimental::awaitable_operators;
    asio::ip::tcp::resolver resolver(executor_);
    asio::steady_timer resolve_deadline(executor_, deadline);
    auto resolved =
        co_await (resolver.async_resolve(backend.host, std::to_string(backend.port), kUseTuple) ||
                  resolve_deadline.async_wait(kUseTuple));
    if (resolved.index() == 1) {
      release(std::move(connection), false);
      co_return Acquired{Failure::backend_timeout, nullptr, nullptr};
    }
    std::tie(ec, endpoints) = std::get<0>(std::move(resolved));
    if (ec) {
      release(std::move(connection), false);
      co_return Acquired{Failure::backend_refused, nullptr, nullptr};
    }
  }
  auto& tcp = connection->stream.tcp();
  net::set_deadline(tcp, timeout_);
  std::tie(ec, std::ignore) = co_await tcp.async_connect(endpoints, kUseTuple);
  if (ec) {
    release(std::move(connection), false);
    co_return Acquired{backend_failure(ec, BackendPhase::connect), nullptr, nullptr};
  }
  tcp.socket().set_option(asio::ip::tcp::no_delay(true), ec);
  if (auto* tls = connection->stream.tls()) {
    // SNI and certificate name checks use the backend URL's host (IP literals: no SNI).
    if (!host_is_ip) {
      SSL_set_tlsext_host_name(tls->native_handle(), backend.host.c_str());
    }
    tls->set_verify_callback(net::ssl::host_name_verification(backend.host));
    // An h2:// backend is offered HTTP/2 alone, and must take it.
    static constexpr unsigned char kAlpnH2[] = {2, 'h', '2'};
    if (backend.http2) SSL_set_alpn_protos(tls->native_handle(), kAlpnH2, sizeof kAlpnH2);
    std::tie(ec) = co_await tls->async_handshake(net::ssl::stream_base::client, kUseTuple);
    if (ec) {
      release(std::move(connection), false);
      co_return Acquired{backend_failure(ec, BackendPhase::tls_handshake), nullptr, nullptr};
    }
    if (backend.http2 && !net::alpn_selected(tls->native_handle(), "h2")) {
      spdlog::warn("backend {}: TLS handshake did not select HTTP/2 (ALPN h2)", backend.url);
      release(std::move(connection), false);
      co_return Acquired{Failure::backend_tls_failed, nullptr, nullptr};
    }
  }
  co_return Acquired{std::nullopt, std::move(connection), nullptr};
}

void UpstreamPool::release(std::unique_ptr<UpstreamConnection> connection, bool reusable) {
  auto& slot = backends_[connection->key];
  if (connection->slot_held) free_slot(slot);
  connection->slot_held = false;
  if (!keep_alive_ || !reusable || connection->buffer.size() != 0 ||
      slot.idle.size() >= max_sockets_) {
    return;  // destroying the connection closes it
  }
  connection->stream.tcp().expires_never();
  // A large body left a relay-sized read buffer: an idle connection does not keep it.
  if (connection->buffer.capacity() > kIdleBufferKeep) connection->buffer.shrink_to_fit();
  const auto id = next_idle_id_++;
  slot.idle.push_back(Idle{id, std::move(connection), false, nullptr});
  // The watch starts within kWatchDelay (see watch_released): under load the connection is
  // taken again before that, and then needs none.
  unwatched_.emplace_back(&slot, id);
  if (unwatched_.size() == 1) {
    watch_timer_.expires_after(kWatchDelay);
    watch_timer_.async_wait([this](const error_code& ec) {
      if (!ec) watch_released();
    });
  }
}

void UpstreamPool::keep_h2(std::shared_ptr<H2Upstream> session) {
  auto& connection = session->connection();
  auto& slot = backends_[connection.key];
  if (connection.slot_held) free_slot(slot);
  connection.slot_held = false;
  if (!keep_alive_ || !session->reusable() || slot.idle.size() >= max_sockets_) {
    session->close();
    return;
  }
  const auto id = next_idle_id_++;
  session->park([&slot, id] {
    // The session has closed itself; erasing the entry lets it go.
    std::erase_if(slot.idle, [id](const Idle& idle) { return idle.id == id; });
  });
  slot.idle.push_back(Idle{id, nullptr, true, std::move(session)});
}

// Every connection released since the timer was armed and still idle gets its watch, so a
// backend's close is noticed from then on.
void UpstreamPool::watch_released() {
  for (const auto& [slot, id] : unwatched_) {
    const auto it = std::find_if(slot->idle.rbegin(), slot->idle.rend(),
                                 [id = id](const Idle& idle) { return idle.id == id; });
    if (it == slot->idle.rend() || it->watched) continue;  // taken again meanwhile
    it->watched = true;
    watch_idle(*slot, id, *it->connection);
  }
  unwatched_.clear();
}

void UpstreamPool::forget(UpstreamConnection& connection) {
  if (!connection.slot_held) return;
  connection.slot_held = false;
  free_slot(backends_[connection.key]);
}

void UpstreamPool::free_slot(PerBackend& slot) {
  if (!slot.waiters.empty()) {
    // Hand the slot over: in_use stays as it is, the oldest waiter now holds it.
    auto waiter = slot.waiters.front();
    slot.waiters.pop_front();
    *waiter.granted = true;
    waiter.wake->cancel();
    return;
  }
  if (slot.in_use > 0) --slot.in_use;
}

// A pending read rather than a readiness wait: Asio registers a wait with epoll afresh each time
// (a system call per pooled request), a read not. Anything that arrives on an idle connection
// (the backend's close, or bytes no request asked for) ends its use; if it was taken for a
// request just as that happened, the request fails on it and is retried on a fresh connection
// (a reused connection's failure is not the backend's fault).
void UpstreamPool::watch_idle(PerBackend& slot, std::uint64_t id, UpstreamConnection& connection) {
  beast::get_lowest_layer(connection.stream.tcp())
      .socket()
      .async_read_some(asio::buffer(&connection.idle_probe, 1),
                       [&slot, id](error_code ec, std::size_t /*bytes*/) {
                         if (ec == asio::error::operation_aborted) return;  // taken for a request
                         std::erase_if(slot.idle, [id](const Idle& idle) { return idle.id == id; });
                       });
}

void UpstreamPool::report_metrics() const {
  std::int64_t idle = 0;
  std::int64_t busy = 0;
  std::int64_t waiting = 0;
  for (const auto& [url, slot] : backends_) {
    idle += static_cast<std::int64_t>(slot.idle.size());
    busy += slot.in_use;
    waiting += static_cast<std::int64_t>(slot.waiters.size());
  }
  metrics::set(metrics::Gauge::pool_idle, idle);
  metrics::set(metrics::Gauge::pool_busy, busy);
  metrics::set(metrics::Gauge::pool_waiting, waiting);
}

}  // namespace hipache::proxy
