// One active check of a backend: connect through the proxy's own upstream code (the same
// resolution, timeouts and, for https:// backends, the same TLS verification as proxying), send
// one request without a body, read the response header, close. Healthy is hipache-hchecker's
// rule: any answer but a 5xx, where 503 (maintenance) counts as up.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <string>

#include "hipache/route.hpp"
#include "proxy/upstream_pool.hpp"

namespace hipache::health {

struct ProbeRequest {
  std::string method;
  std::string path;
  std::string host;        // Host header
  std::string user_agent;  // names the checker, so backends (and tests) see who checks
  std::chrono::milliseconds timeout{3000};  // for the answer, after the connection is up
};

struct ProbeResult {
  bool healthy = false;
  unsigned status = 0;  // 0: no answer
  std::string error;    // why not healthy, for the log
};

// Whether a status counts as up.
constexpr bool status_is_healthy(unsigned status) {
  return status < 500 || status == 503;
}

// `pool` bounds the connect (and TLS handshake) by its own timeout and is not kept alive.
boost::asio::awaitable<ProbeResult> probe_backend(proxy::UpstreamPool& pool, const Backend& backend,
                                                  const ProbeRequest& request);

}  // namespace hipache::health
