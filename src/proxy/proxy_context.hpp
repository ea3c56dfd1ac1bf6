// What every client session of a worker shares. Single-threaded: one per worker event loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

#include "hipache/config.hpp"
#include "hipache/route_store.hpp"
#include "log/access_log.hpp"
#include "proxy/error_pages.hpp"
#include "proxy/upstream_pool.hpp"

namespace hipache::proxy {

struct ProxyContext {
  const Config& config;
  RouteStore& store;
  UpstreamPool& pool;
  const ErrorPages& error_pages;
  log::AccessLog& access_log;
  std::mt19937 rng{std::random_device{}()};
  std::uint64_t active_sessions = 0;  // for graceful drain
  bool draining = false;              // stop keep-alive once the worker is asked to stop
};

// Serves one accepted client connection until it closes (keep-alive and pipelining included).
boost::asio::awaitable<void> serve_client(boost::asio::ip::tcp::socket socket, ProxyContext& ctx);

}  // namespace hipache::proxy
