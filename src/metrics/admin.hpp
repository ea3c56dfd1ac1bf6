// The admin listener's requests (docs/operations.md, "Metrics and status page"): GET /metrics
// (Prometheus), GET / (the status page) and GET /status.json (what the page polls). Served by
// the workers, which accept on the admin sockets the master bound: the master never runs an
// event loop, and a worker has the Redis link the page's dead backends come from; the numbers
// are the shared table's, the same whichever worker answers. Never proxied, routed or in the
// access log. One request per connection, header at most kHeaderLimit, kTimeout for the whole
// exchange, at most kMaxConnections at once per worker.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <string>
#include <string_view>

#include "hipache/config.hpp"
#include "metrics/table.hpp"

namespace hipache::store {
class RedisRouteStore;
}

namespace hipache::metrics {

inline constexpr std::size_t kHeaderLimit = 8192;
inline constexpr std::chrono::seconds kTimeout{10};
inline constexpr std::size_t kMaxConnections = 32;
// Frontends whose dead: sets the status page reads, at most.
inline constexpr std::size_t kStatusDeadFrontends = 20;

struct AdminContext {
  const Config& config;
  const MetricsTable* table;  // null: the master could not make one (every number is 0)
  store::RedisRouteStore& store;
  std::size_t open = 0;  // admin connections of this worker now
};

boost::asio::awaitable<void> serve_admin(boost::asio::ip::tcp::socket socket, AdminContext& ctx);

// Whether an Authorization field value grants access: anything when `token` is empty, else
// exactly "Bearer <token>" (compared in constant time).
bool authorized(std::string_view authorization, std::string_view token);

// The status page: one HTML document with its CSS and script inline (metrics/status_page.cpp).
std::string_view status_page_html();

}  // namespace hipache::metrics
