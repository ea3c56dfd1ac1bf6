// Where routes come from (SPEC section 3) and where failed backends are reported (section 6).
// The proxy only knows these interfaces; the implementations live in src/store/.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "hipache/route.hpp"

namespace hipache {

struct RouteLookup {
  enum class Status { found, not_found, unavailable } status = Status::not_found;
  // Set when found. Shared with the route cache: a request holds the route, never copies it.
  std::shared_ptr<const Route> route;
};

class RouteStore {
 public:
  virtual ~RouteStore() = default;

  // Resolves a normalised host: frontend list (exact, wildcards, "*") and the dead set of the
  // exact host, with this worker's own recent dead marks applied.
  virtual boost::asio::awaitable<RouteLookup> lookup(const std::string& host) = 0;

  // What lookup() would answer, when that needs no I/O (a fresh cached entry); nullopt: call
  // lookup(). The common path then costs no coroutine frame.
  virtual std::optional<RouteLookup> cached(const std::string& host) = 0;
};

// Passive health checks (SPEC section 6): where the proxy reports a failed backend.
class BackendHealth {
 public:
  virtual ~BackendHealth() = default;

  // Records that backend `index` of `route` failed for `host`. Does nothing unless
  // can_mark_dead(route, index): a single-backend frontend is never marked.
  virtual void mark_dead(const std::string& host, const Route& route, std::size_t index) = 0;

  // False while an external health checker announces itself through hchecker_ping.
  virtual bool passive_checks_enabled() const = 0;
};

inline bool can_mark_dead(const Route& route, std::size_t index) {
  return route.backends.size() > 1 && index < route.backends.size();
}

}  // namespace hipache
