#include "store/caching_route_store.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cassert>

#include "metrics/record.hpp"

namespace hipache::store {

namespace asio = boost::asio;

namespace {

// A live entry lasts until an invalidation; the hour only bounds a link that stays up while
// silently losing messages. Entries with dead backends live briefly, because Redis may notice
// the dead set's expiry late.
constexpr auto kLiveEntryLifetime = std::chrono::hours(1);
constexpr auto kDeadEntryLifetime = std::chrono::seconds(1);
constexpr std::uint64_t kLruGeneration = UINT64_MAX;  // entries of Hipache's lruCache mode
constexpr std::uint64_t kLastResortGeneration = 0;    // never fresh: only for an outage

bool any_dead(const RouteLookup& lookup) {
  return lookup.route && std::any_of(lookup.route->backends.begin(), lookup.route->backends.end(),
                                     [](const Backend& b) { return b.dead; });
}

}  // namespace

RouteCacheSettings RouteCacheSettings::from(const Config& config) {
  RouteCacheSettings settings;
  if (config.server.lru_cache) {
    settings.capacity = config.server.lru_cache->size;
    settings.lru_ttl = std::chrono::milliseconds(
        static_cast<long long>(config.server.lru_cache->ttl_seconds * 1000));
  }
  settings.local_mark_lifetime = std::chrono::seconds(config.server.dead_backend_ttl_s);
  settings.live = config.server.route_cache;
  return settings;
}

CachingRouteStore::CachingRouteStore(std::shared_ptr<RouteSource> source, BackendHealth& health,
                                     const RouteCacheSettings& settings)
    : source_(std::move(source)),
      health_(health),
      lru_ttl_(settings.lru_ttl),
      live_(settings.live),
      local_mark_lifetime_(settings.local_mark_lifetime),
      positive_(settings.capacity, settings.byte_budget),
      negative_(settings.negative_capacity, settings.negative_byte_budget) {
  source_->set_sink(this);
}

CachingRouteStore::~CachingRouteStore() {
  source_->set_sink(nullptr);
}

std::optional<RouteLookup> CachingRouteStore::cached(const std::string& host) {
  if (const auto* hit = fresh_entry(host)) {
    metrics::add(metrics::Counter::route_cache_hits);
    return with_local_marks(host, hit->lookup);
  }
  return std::nullopt;
}

asio::awaitable<RouteLookup> CachingRouteStore::lookup(const std::string& host) {
  if (auto hit = cached(host)) co_return std::move(*hit);
  metrics::add(metrics::Counter::route_cache_misses);
  // Single flight: concurrent misses for one host share one read, unless that read may have
  // missed a write this request must see (an invalidation arrived since it started, or one is
  // pending at the source): then this request reads afresh.
  if (const auto it = flights_.find(host); it != flights_.end() && may_join(*it->second)) {
    auto flight = it->second;
    asio::steady_timer wake(co_await asio::this_coro::executor,
                            asio::steady_timer::time_point::max());
    flight->waiters.push_back(&wake);
    co_await wake.async_wait(asio::as_tuple(asio::use_awaitable));
    co_return with_local_marks(host, flight->result);
  }
  auto flight = std::make_shared<Flight>();
  flight->generation = generation_;
  flight->invalidations = invalidations_;
  flights_[host] = flight;
  const bool tracked = tracking_active_;
  auto result = co_await source_->read(host);
  if (result.status == RouteLookup::Status::unavailable) {
    // The source is out of reach: any route we still hold beats an error page.
    if (const auto* stale = any_entry(host)) result = stale->lookup;
  } else {
    // A read that an invalidation overtook answers this request; it is kept only as a last resort.
    remember(
        host, result,
        tracked && flight->generation == generation_ && flight->invalidations == invalidations_);
  }
  if (const auto it = flights_.find(host); it != flights_.end() && it->second == flight) {
    flights_.erase(it);
  }
  flight->result = result;
  assert(result.status != RouteLookup::Status::found || result.route != nullptr);
  for (auto* waiter : flight->waiters) waiter->cancel();
  co_return with_local_marks(host, std::move(result));
}

void CachingRouteStore::mark_dead(const std::string& host, const Route& route, std::size_t index) {
  if (!can_mark_dead(route, index)) return;
  // Only while passive checks are on: an external checker's view is not overridden locally.
  if (health_.passive_checks_enabled()) {
    auto& marks = local_marks_[host];
    const auto expires = Clock::now() + local_mark_lifetime_;
    const auto it = std::find_if(marks.begin(), marks.end(),
                                 [&](const LocalMark& mark) { return mark.index == index; });
    if (it != marks.end()) {
      it->expires = expires;
    } else {
      marks.push_back({index, expires});
    }
  }
  health_.mark_dead(host, route, index);
}

bool CachingRouteStore::may_join(const Flight& flight) {
  if (flight.generation != generation_ || flight.invalidations != invalidations_) return false;
  return !(tracking_active_ && source_->invalidation_pending());
}

const routing::RouteCache::Entry* CachingRouteStore::any_entry(const std::string& host) {
  if (const auto* entry = positive_.find(host)) return entry;
  return negative_.find(host);
}

// An entry may answer without a read: in live mode while the link that vouches for it is up
// and has nothing pending, in lruCache mode until its TTL.
const routing::RouteCache::Entry* CachingRouteStore::fresh_entry(const std::string& host) {
  const auto* entry = any_entry(host);
  if (entry == nullptr || Clock::now() >= entry->expires) return nullptr;
  if (tracking_active_ && entry->generation == generation_) {
    return source_->invalidation_pending() ? nullptr : entry;
  }
  if (!tracking_active_ && lru_ttl_ && entry->generation == kLruGeneration) return entry;
  return nullptr;
}

void CachingRouteStore::remember(const std::string& host, const RouteLookup& lookup,
                                 bool vouched_by_tracking) {
  const bool found = lookup.status == RouteLookup::Status::found;
  auto& cache = found ? positive_ : negative_;
  const auto now = Clock::now();
  if (vouched_by_tracking) {
    cache.insert(host, lookup, now + (any_dead(lookup) ? kDeadEntryLifetime : kLiveEntryLifetime),
                 generation_);
  } else if (lru_ttl_) {
    cache.insert(host, lookup, now + *lru_ttl_, kLruGeneration);
  } else if (const auto* held = any_entry(host);
             live_ && (held == nullptr || !tracking_active_ || held->generation != generation_)) {
    // Read while no link vouched for it (before tracking was set up, during an outage, or
    // overtaken by an invalidation): it answers no later request, but an outage that follows
    // serves it rather than a 503.
    cache.insert(host, lookup, now, kLastResortGeneration);
  } else {
    return;  // a fresher vouched entry stays
  }
  // The newest read decides: the other table's entry for the host is older.
  (found ? negative_ : positive_).erase(host);
}

RouteLookup CachingRouteStore::with_local_marks(const std::string& host, RouteLookup lookup) {
  if (lookup.status == RouteLookup::Status::found) {
    if (auto marked = locally_marked(host, *lookup.route)) lookup.route = std::move(marked);
  }
  return lookup;
}

// `route` with this worker's unexpired dead marks for `host` applied, as a copy (the cached
// route is shared); nullptr when there are none, which is nearly always.
std::shared_ptr<const Route> CachingRouteStore::locally_marked(const std::string& host,
                                                               const Route& route) {
  const auto it = local_marks_.find(host);
  if (it == local_marks_.end()) return nullptr;
  const auto now = Clock::now();
  auto& marks = it->second;
  std::erase_if(marks, [&](const LocalMark& m) { return m.expires <= now; });
  std::shared_ptr<Route> marked;
  for (const auto& mark : marks) {
    if (mark.index >= route.backends.size()) continue;
    if (!marked) marked = std::make_shared<Route>(route);
    marked->backends[mark.index].dead = true;
  }
  if (marks.empty()) local_marks_.erase(it);
  return marked;
}

void CachingRouteStore::link_up() {
  ++generation_;
  tracking_active_ = true;
  spdlog::info("route cache: live (Redis client-side caching)");
}

// Nothing cached is vouched for any more. Entries stay only as a last resort while the source
// cannot be read at all.
void CachingRouteStore::link_lost() {
  if (tracking_active_) spdlog::info("route cache: invalidation link lost; reading Redis");
  tracking_active_ = false;
  ++generation_;
}

void CachingRouteStore::invalidated(Key key, std::string_view host) {
  ++invalidations_;
  metrics::add(metrics::Counter::route_cache_invalidations);
  if (key == Key::dead) {
    positive_.erase(host);
    return;
  }
  if (host == "*" || host.substr(0, 2) == "*.") {
    // A wildcard can route many cached hosts (and unknown ones): start over.
    invalidated_all();
    return;
  }
  positive_.erase(host);
  negative_.erase(host);
}

void CachingRouteStore::invalidated_all() {
  ++invalidations_;
  positive_.clear();
  negative_.clear();
}

}  // namespace hipache::store
