// The seam between the route cache and where routes are read from: the caching store
// (caching_route_store.hpp) asks a RouteSource for reads and hears of changes through an
// InvalidationSink. Redis implements the source (redis_route_source.cpp); unit tests a fake.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <string>
#include <string_view>

#include "hipache/route_store.hpp"

namespace hipache::store {

// What a source tells the cache. Between link_up() and link_lost(), every change to the
// routing table is announced by invalidated() or invalidated_all() before the next read that
// could see it completes.
class InvalidationSink {
 public:
  enum class Key { frontend, dead };  // frontend:<host> or dead:<host>

  virtual void link_up() = 0;
  virtual void link_lost() = 0;
  // `host` as it appears in the key (for a frontend, it may be a wildcard: "*" or "*.domain").
  virtual void invalidated(Key key, std::string_view host) = 0;
  virtual void invalidated_all() = 0;

 protected:
  ~InvalidationSink() = default;
};

class RouteSource {
 public:
  virtual ~RouteSource() = default;

  // One read of a normalised host's route: frontend list (exact, wildcards, "*") and the
  // exact host's dead set. `unavailable` when the source cannot answer.
  virtual boost::asio::awaitable<RouteLookup> read(const std::string& host) = 0;

  // Whether an invalidation has arrived that the sink has not been told yet: then a cached
  // entry must not answer. Cheap enough for every request.
  virtual bool invalidation_pending() = 0;

  // Where invalidations go; nullptr detaches (the sink is going away).
  virtual void set_sink(InvalidationSink* sink) = 0;
};

}  // namespace hipache::store
