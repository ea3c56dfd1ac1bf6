// Backend connections of one worker: connect (with the tcpTimeout deadline), at most
// `maxSockets` in use per backend (requests beyond wait), and, with httpKeepAlive, idle
// connections kept per backend for reuse. An idle connection that turns readable (the backend
// closed it or sent stray bytes) is dropped at once, so a reused connection is rarely stale.
// An HTTP/2 backend's connection is kept with its session around it (proxy/h2_upstream.hpp):
// the session's state spans its streams, and it reads while idle (keep_h2).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "hipache/errors.hpp"
#include "hipache/route.hpp"
#include "net/stream.hpp"

namespace hipache::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;

inline constexpr std::size_t kUpstreamReadBufferLimit = 80 * 1024;
// Read buffer an idle pooled connection may keep (a small response's header fits).
inline constexpr std::size_t kIdleBufferKeep = 4 * 1024;

struct UpstreamConnection {
  explicit UpstreamConnection(net::AnyStream s) : stream(std::move(s)) {}
  net::AnyStream stream;  // TLS for https:// backends
  // Bytes read past the current response (non-empty = not reusable). Bounded like the client's:
  // a backend cannot make the worker buffer an endless header or chunk line.
  beast::flat_buffer buffer{kUpstreamReadBufferLimit};
  std::string key;         // pool key, "host:port" (+ "+tls")
  bool reused = false;     // came from the idle pool (a failure may just mean it went stale)
  bool slot_held = false;  // counts against maxSockets until released or forgotten
  char idle_probe = 0;     // where the idle watch's read would put a byte the backend sent
};

class H2Upstream;

class UpstreamPool {
 public:
  // timeout: connect (and TLS handshake) deadline and longest wait for a free slot; zero =
  // none. verify_backend_tls: check the certificates of https:// backends.
  UpstreamPool(asio::any_io_executor executor, unsigned max_sockets, bool keep_alive,
               std::chrono::seconds timeout, bool verify_backend_tls);
  ~UpstreamPool();
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;

  struct Acquired {
    std::optional<Failure> failure;
    std::unique_ptr<UpstreamConnection> connection;
    // Instead of `connection`: a pooled HTTP/2 session (its connection()->reused is set).
    std::shared_ptr<H2Upstream> h2;
  };
  // `replayable`: the request can be sent again on a fresh connection if a reused one turns out
  // closed. One that cannot (a body, or a method that is not idempotent) takes a pooled
  // connection whose idle watch has not started yet only after a peek shows it still open.
  asio::awaitable<Acquired> acquire(const Backend& backend, bool allow_reuse, bool replayable);

  // Returns the slot; keeps the connection for reuse when `reusable` and keep-alive is on.
  void release(std::unique_ptr<UpstreamConnection> connection, bool reusable);

  // The same for an HTTP/2 backend's session after a stream: kept while idle if it is
  // reusable() and keep-alive is on, otherwise closed. Idle, it counts like any pooled
  // connection; it leaves the pool when its connection ends (a GOAWAY, a close, bad bytes).
  void keep_h2(std::shared_ptr<H2Upstream> session);

  // Returns the slot but leaves the connection with the caller (a WebSocket tunnel), who then
  // just destroys it when done; it is never pooled.
  void forget(UpstreamConnection& connection);

  // Metrics (metrics/record.hpp): idle and busy connections, requests waiting for a slot.
  void report_metrics() const;

 private:
  struct Idle {
    std::uint64_t id;
    std::unique_ptr<UpstreamConnection> connection;
    bool watched;  // its idle watch is pending
    // An HTTP/2 session (then `connection` is empty): it reads while idle, no watch needed.
    std::shared_ptr<H2Upstream> h2;
  };
  struct PerBackend {
    unsigned in_use = 0;
    // Most recently released last. A vector, not a list: a node per release was a malloc per
    // request.
    std::vector<Idle> idle;
    // Requests waiting for a slot, oldest first. A freed slot is handed to the oldest directly
    // (granted = true), so newcomers cannot overtake those already waiting.
    struct Waiter {
      asio::steady_timer* wake;
      bool* granted;
    };
    std::deque<Waiter> waiters;
  };

  void free_slot(PerBackend& slot);
  void watch_idle(PerBackend& slot, std::uint64_t id, UpstreamConnection& connection);
  void watch_released();

  // A connection returned to the pool gets its idle watch (a pending one-byte read, see
  // watch_idle) at most this long afterwards, if still idle then: under load it is taken again
  // well before, and a watch started and cancelled per request was a system call per request.
  // A backend's close within this time is met by the request that takes the connection: one
  // that can be replayed is sent again on a fresh connection (Exchange::proxy, stale
  // reuse); one that cannot peeks first (acquire).
  static constexpr std::chrono::milliseconds kWatchDelay{100};

  asio::any_io_executor executor_;
  unsigned max_sockets_;
  bool keep_alive_;
  std::chrono::seconds timeout_;
  bool verify_backend_tls_;
  // Built on first use: loading the system trust store costs time and megabytes per worker
  // that deployments without https:// backends should not pay.
  std::shared_ptr<net::ssl::context> backend_tls_;
  std::uint64_t next_idle_id_ = 0;
  std::unordered_map<std::string, PerBackend> backends_;  // never erased: pointers stay valid
  // Released since watch_timer_ was armed, their idle watch not started yet.
  std::vector<std::pair<PerBackend*, std::uint64_t>> unwatched_;
  asio::steady_timer watch_timer_;
};

}  // namespace hipache::proxy
