// Where routes come from (SPEC section 3). The proxy only knows this interface; the Redis
// implementation lives in src/store/.
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

  // Passive health check: records that backend `index` of `route` failed for `host`.
  // Does nothing for single-backend frontends (SPEC section 6).
  virtual void mark_dead(const std::string& host, const Route& route, std::size_t index) = 0;

  // False while an external health checker announces itself through hchecker_ping.
  virtual bool passive_checks_enabled() const = 0;

  virtual void stop() = 0;
};

}  // namespace hipache
