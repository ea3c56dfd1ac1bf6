// What every client session of a worker shares. Single-threaded: one per worker event loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <optional>
#include <random>
#include <unordered_set>

#include "hipache/config.hpp"
#include "hipache/route_store.hpp"
#include "http/request_id.hpp"
#include "log/access_log.hpp"
#include "net/proxy_header.hpp"
#include "net/stream.hpp"
#include "proxy/error_pages.hpp"
#include "proxy/idle_connections.hpp"
#include "proxy/relay_chunks.hpp"
#include "proxy/upstream_pool.hpp"

namespace hipache::proxy {

// A client connection as the worker sees it when it drains: idle keep-alive connections are
// closed at once (or handed over, when the worker is replaced), busy ones finish their current
// request and then close (or are handed over).
class DrainableSession {
 public:
  virtual void close_if_idle() = 0;

 protected:
  ~DrainableSession() = default;
};

struct ProxyContext {
  const Config& config;
  RouteStore& store;
  BackendHealth& health;  // passive checks: where failed backends are reported
  UpstreamPool& pool;
  const ErrorPages& error_pages;
  log::AccessLog& access_log;
  IdleConnections& idle;
  RelayChunks chunks{};          // body relay buffers, reused
  TunnelChunks tunnel_chunks{};  // tunnel buffers while bytes queue up
  std::mt19937 rng{std::random_device{}()};
  // Request ids (server.requestIdHeader): seeded here, in the worker, so no two workers share one.
  http::RequestIdGenerator request_ids{};
  // Client connections served by a session or a tunnel (proxy/tunnel.hpp).
  std::unordered_set<DrainableSession*> sessions{};
  bool draining = false;  // no more keep-alive once the worker is asked to stop
  // A replaced worker's idle TLS connections (which cannot be handed over) stay open for
  // kIdleTlsGrace: a client's next request then gets its answer with Connection: close instead
  // of racing a close.
  bool keep_idle_tls = false;

  // Every open client connection: those in `sessions` and the parked ones.
  std::size_t open_connections() const { return sessions.size() + idle.size(); }

  // Whether an answer must close its connection because the worker drains: a plain connection
  // of a replaced worker stays open and goes to a serving worker instead (proxy/handover.hpp).
  bool closes_for_drain(bool tls) const { return draining && (tls || !idle.handing_over()); }
};

// Answers 503 (plain http) and closes: the worker is at server.maxConnections.
boost::asio::awaitable<void> refuse_client(boost::asio::ip::tcp::socket socket, ProxyContext& ctx,
                                           bool tls);

// Starts a graceful drain: every later response closes its connection, idle ones close now.
// With `handover` (the worker is being replaced), plain connections go to a serving worker
// instead, idle ones now and busy ones after their current request, and idle TLS connections
// close only after kIdleTlsGrace (end_idle_tls_grace).
void begin_drain(ProxyContext& ctx, ConnectionHandover* handover = nullptr);
constexpr std::chrono::seconds kIdleTlsGrace{2};
void end_idle_tls_grace(ProxyContext& ctx);

// Serves one accepted client connection until it closes or, between requests, is parked in
// ctx.idle (keep-alive and pipelining included). `tls`: the listener's TLS context for https
// listeners, null for plain http. `requests_before`: served on this connection before a park.
// `proxied`: the client's address from a PROXY header (proxy/proxied_client.hpp), which then
// stands for the socket's peer.
boost::asio::awaitable<void> serve_client(
    boost::asio::ip::tcp::socket socket, ProxyContext& ctx, net::ssl::context* tls,
    std::uint64_t requests_before = 0, std::optional<net::ProxiedAddress> proxied = std::nullopt);

// The completion handler of every connection coroutine: the data path reports errors through
// error_code, so an exception escaping a connection is a bug, logged loudly.
void log_connection_exception(const std::exception_ptr& error);

}  // namespace hipache::proxy
