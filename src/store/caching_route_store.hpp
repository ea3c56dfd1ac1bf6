// The route cache in front of a RouteSource (ARCHITECTURE.md, "live route cache"): an entry
// answers only while the invalidation link that vouches for it is up and unchanged since it
// was read (or, in Hipache's lruCache mode, until its TTL); concurrent misses for one host
// share one read; unknown hosts are cached too, in a smaller bound; while the source cannot
// answer, any entry still held beats an error page; and this worker's own dead marks apply to
// its next request at once, without waiting for the store to echo them back.
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "hipache/config.hpp"
#include "hipache/route_store.hpp"
#include "routing/route_cache.hpp"
#include "store/route_source.hpp"

namespace hipache::store {

struct RouteCacheSettings {
  // Hipache's lruCache mode: entries answer for this long without invalidations.
  std::optional<std::chrono::milliseconds> lru_ttl;
  std::size_t capacity = 100000;
  // Bytes as routing::RouteCache estimates them; docs/security.md states both bounds.
  std::size_t byte_budget = 64 * 1024 * 1024;
  std::size_t negative_capacity = 10000;  // unknown hosts
  std::size_t negative_byte_budget = 4 * 1024 * 1024;
  // The live route cache (server.routeCache): only then does a read no link vouched for stay
  // as a last resort for an outage (without it, as in Hipache, an outage is a 503).
  bool live = true;
  // How long this worker applies its own dead mark: the dead set's TTL in Redis.
  std::chrono::seconds local_mark_lifetime{30};

  static RouteCacheSettings from(const Config& config);
};

class CachingRouteStore final : public RouteStore, public BackendHealth, private InvalidationSink {
 public:
  // Marks go to `health` (which must outlive this store) and are also applied locally.
  CachingRouteStore(std::shared_ptr<RouteSource> source, BackendHealth& health,
                    const RouteCacheSettings& settings);
  ~CachingRouteStore() override;
  CachingRouteStore(const CachingRouteStore&) = delete;
  CachingRouteStore& operator=(const CachingRouteStore&) = delete;

  std::optional<RouteLookup> cached(const std::string& host) override;
  boost::asio::awaitable<RouteLookup> lookup(const std::string& host) override;
  void mark_dead(const std::string& host, const Route& route, std::size_t index) override;
  bool passive_checks_enabled() const override { return health_.passive_checks_enabled(); }

  std::size_t size() const { return positive_.size() + negative_.size(); }
  std::size_t bytes() const { return positive_.bytes() + negative_.bytes(); }

 private:
  using Clock = routing::RouteCache::Clock;

  struct Flight {
    RouteLookup result;
    std::vector<boost::asio::steady_timer*> waiters;
    std::uint64_t generation = 0;     // of the invalidation link when the read started
    std::uint64_t invalidations = 0;  // invalidations_ when the read started
  };

  struct LocalMark {
    std::size_t index;
    Clock::time_point expires;
  };

  void link_up() override;
  void link_lost() override;
  void invalidated(Key key, std::string_view host) override;
  void invalidated_all() override;

  bool may_join(const Flight& flight);
  const routing::RouteCache::Entry* any_entry(const std::string& host);
  const routing::RouteCache::Entry* fresh_entry(const std::string& host);
  void remember(const std::string& host, const RouteLookup& lookup, bool vouched_by_tracking);
  RouteLookup with_local_marks(const std::string& host, RouteLookup lookup);
  std::shared_ptr<const Route> locally_marked(const std::string& host, const Route& route);

  std::shared_ptr<RouteSource> source_;
  BackendHealth& health_;
  std::optional<std::chrono::milliseconds> lru_ttl_;
  bool live_;
  std::chrono::seconds local_mark_lifetime_;
  bool tracking_active_ = false;  // invalidations flow: cached entries may answer
  std::uint64_t generation_ = 1;  // changes whenever the link goes down or comes up
  std::uint64_t invalidations_ = 0;
  routing::RouteCache positive_;
  routing::RouteCache negative_;
  std::unordered_map<std::string, std::shared_ptr<Flight>> flights_;
  std::unordered_map<std::string, std::vector<LocalMark>> local_marks_;
};

}  // namespace hipache::store
