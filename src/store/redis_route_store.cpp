#include "store/redis_route_store.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <charconv>
#include <unordered_map>

#include "hipache/router.hpp"
#include "routing/route_cache.hpp"
#include "store/redis_connection.hpp"

namespace hipache::store {

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// An external checker writes its Unix time here; passive checks pause while it is fresh.
constexpr const char* kHcheckerPingKey = "hchecker_ping";
constexpr auto kHcheckerPollInterval = 5s;
constexpr long long kHcheckerFreshSeconds = 30;
constexpr const char* kDeadChannel = "dead";
constexpr auto kErrorLogInterval = 10s;

std::optional<long long> parse_integer(std::string_view text) {
  long long value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// The live route cache (ARCHITECTURE.md): Redis tells us which keys changed. The reader
// connection turns on CLIENT TRACKING in broadcast mode for the frontend:/dead: prefixes and
// redirects the invalidations (RESP2) to a subscriber connection. An entry is served only while
// that link is up and unchanged since the entry was read; a read that an invalidation overtook
// is used once but not cached. Entries with dead backends live briefly, because Redis may notice
// the dead set's expiry late.
constexpr std::size_t kCacheCapacity = 100000;
constexpr std::size_t kNegativeCacheCapacity = 10000;  // unknown hosts: bounded, LRU
// Bytes as RouteCache estimates them. 64 MB, a third of the default memoryLimit, holds ~90,000
// routes of two backends (~740 bytes each), so with ordinary data both bounds bite near the same
// size; 4 MB holds 10,000 unknown hosts of ordinary length (~270 bytes), 7,500 of 255 bytes.
constexpr std::size_t kCacheBudget = 64 * 1024 * 1024;
constexpr std::size_t kNegativeCacheBudget = 4 * 1024 * 1024;
constexpr auto kLiveEntryLifetime = std::chrono::hours(1);
constexpr auto kDeadEntryLifetime = 1s;
constexpr std::uint64_t kLruGeneration = UINT64_MAX;  // entries of Hipache's lruCache mode
constexpr const char* kInvalidationChannel = "__redis__:invalidate";
constexpr auto kHeartbeatInterval = 3s;

class RedisRouteStore final : public RouteStore,
                              public std::enable_shared_from_this<RedisRouteStore> {
 public:
  RedisRouteStore(asio::any_io_executor executor, const Config& config)
      : executor_(executor),
        read_prefix_(config.read_endpoint.prefix),
        write_prefix_(config.write_endpoint.prefix),
        dead_ttl_(std::to_string(config.server.dead_backend_ttl_s)),
        dead_ttl_duration_(std::chrono::seconds(config.server.dead_backend_ttl_s)),
        live_cache_(config.server.route_cache),
        positive_(config.server.lru_cache ? config.server.lru_cache->size : kCacheCapacity,
                  kCacheBudget),
        negative_(kNegativeCacheCapacity, kNegativeCacheBudget) {
    if (config.server.lru_cache) {
      lru_ttl_ = std::chrono::milliseconds(
          static_cast<long long>(config.server.lru_cache->ttl_seconds * 1000));
    }
    const auto timeout =
        std::chrono::milliseconds(static_cast<long long>(config.server.redis_timeout_s * 1000));
    reader_ = std::make_shared<RedisConnection>(executor, config.read_endpoint, "read", timeout);
    const bool same = config.driver.size() == 1 || config.driver.front() == config.driver.back();
    writer_ =
        same ? reader_
             : std::make_shared<RedisConnection>(executor, config.write_endpoint, "write", timeout);
    if (live_cache_) {
      subscriber_ = std::make_shared<RedisConnection>(executor, config.read_endpoint,
                                                      "invalidations", timeout);
    }
  }

  void start() {
    if (subscriber_) {
      std::weak_ptr<RedisRouteStore> weak = shared_from_this();
      const auto link_lost = [weak] {
        if (auto self = weak.lock()) self->link_lost();
      };
      subscriber_->set_keep_connected(true);
      subscriber_->set_push_handler([weak](RedisReply message) {
        if (auto self = weak.lock()) self->invalidate(message);
      });
      subscriber_->set_on_connected([weak] {
        if (auto self = weak.lock()) self->subscribe();
      });
      subscriber_->set_on_disconnected([weak, link_lost] {
        if (auto self = weak.lock()) self->subscriber_id_.clear();
        link_lost();
      });
      reader_->set_on_connected([weak] {
        if (auto self = weak.lock()) self->enable_tracking();
      });
      reader_->set_on_disconnected(link_lost);
      subscriber_->start();
      asio::co_spawn(executor_, heartbeat(shared_from_this()), asio::detached);
    }
    reader_->start();
    asio::co_spawn(executor_, poll_hchecker(shared_from_this()), asio::detached);
  }

  std::optional<RouteLookup> cached(const std::string& host) override {
    if (const auto* hit = fresh_entry(host)) return with_local_marks(host, hit->lookup);
    return std::nullopt;
  }

  asio::awaitable<RouteLookup> lookup(const std::string& host) override {
    if (auto hit = cached(host)) co_return std::move(*hit);
    // Single flight: concurrent misses for one host share one Redis read, unless that read may
    // have missed a write this request must see (an invalidation arrived since it started, or
    // one is unread on the subscriber socket): then this request reads afresh.
    if (const auto it = flights_.find(host); it != flights_.end() && may_join(*it->second)) {
      auto flight = it->second;
      asio::steady_timer wake(executor_, asio::steady_timer::time_point::max());
      flight->waiters.push_back(&wake);
      co_await wake.async_wait(asio::as_tuple(asio::use_awaitable));
      co_return with_local_marks(host, flight->result);
    }
    auto flight = std::make_shared<Flight>();
    flight->generation = generation_;
    flight->invalidations = invalidations_;
    flights_[host] = flight;
    const auto generation = generation_;
    const auto invalidations = invalidations_;
    const bool tracked = tracking_active_;
    auto result = co_await read_route(host);
    if (result.status == RouteLookup::Status::unavailable) {
      // Redis is out of reach: any route we still hold beats an error page.
      if (const auto* stale = any_entry(host)) result = stale->lookup;
    } else {
      remember(host, result,
               tracked && generation == generation_ && invalidations == invalidations_);
    }
    if (const auto it = flights_.find(host); it != flights_.end() && it->second == flight) {
      flights_.erase(it);
    }
    flight->result = result;
    for (auto* waiter : flight->waiters) waiter->cancel();
    co_return with_local_marks(host, std::move(result));
  }

  // One round trip: LRANGE of every candidate and SMEMBERS of the exact host's dead set.
  asio::awaitable<RouteLookup> read_route(const std::string& host) {
    const auto candidates = host_candidates(host);
    std::vector<RedisCommand> commands;
    commands.reserve(candidates.size() + 1);
    for (const auto& candidate : candidates) {
      commands.push_back({"LRANGE", read_prefix_ + "frontend:" + candidate, "0", "-1"});
    }
    commands.push_back({"SMEMBERS", read_prefix_ + "dead:" + host});
    auto [ec, replies] =
        co_await reader_->async_exec(std::move(commands), asio::as_tuple(asio::use_awaitable));
    RouteLookup result;
    if (ec || replies.size() != candidates.size() + 1) {
      result.status = RouteLookup::Status::unavailable;
      co_return result;
    }
    // An error reply (NOAUTH, WRONGTYPE on a malformed key, ...) means that part of the
    // routing table could not be read: a store failure (503) for this host, never "no such
    // frontend". Candidates after the one that matched do not matter.
    const auto unreadable = [&](const RedisReply& reply) {
      if (reply.kind != RedisReply::Kind::error) return false;
      report_error_reply(host, reply.text);
      result.status = RouteLookup::Status::unavailable;
      return true;
    };
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      const auto& reply = replies[i];
      if (unreadable(reply)) co_return result;
      if (reply.kind != RedisReply::Kind::array || reply.elements.empty()) continue;
      if (unreadable(replies.back())) co_return result;
      result.status = RouteLookup::Status::found;
      auto shared_route = std::make_shared<Route>();
      auto& route = *shared_route;
      result.route = shared_route;
      route.frontend_key = candidates[i];
      route.identifier = reply.elements.front().text;
      for (std::size_t b = 1; b < reply.elements.size(); ++b) {
        route.backends.push_back(parse_backend_url(reply.elements[b].text));
      }
      const auto& dead = replies.back();
      for (const auto& member : dead.elements) {
        const auto index = parse_integer(member.text);
        if (index && *index >= 0 && static_cast<std::size_t>(*index) < route.backends.size()) {
          route.backends[static_cast<std::size_t>(*index)].dead = true;
        }
      }
      break;
    }
    co_return result;
  }

  void mark_dead(const std::string& host, const Route& route, std::size_t index) override {
    const auto count = route.backends.size();
    if (count <= 1 || index >= count) return;
    std::vector<RedisCommand> commands;
    commands.push_back({"MULTI"});
    if (passive_enabled_) {
      const auto key = write_prefix_ + "dead:" + host;
      commands.push_back({"SADD", key, std::to_string(index)});
      commands.push_back({"EXPIRE", key, dead_ttl_});
      remember_local_mark(host, index);
    }
    commands.push_back({"PUBLISH", kDeadChannel,
                        host + ";" + route.backends[index].url + ";" + std::to_string(index) + ";" +
                            std::to_string(count)});
    commands.push_back({"EXEC"});
    writer_->async_exec(std::move(commands), [host](boost::system::error_code ec, RedisReplies) {
      if (ec) spdlog::warn("could not record dead backend for {}: {}", host, ec.message());
    });
  }

  bool passive_checks_enabled() const override { return passive_enabled_; }

  void stop() override {
    stopped_ = true;
    if (subscriber_) subscriber_->stop();
    reader_->stop();
    writer_->stop();
  }

 private:
  struct Flight {
    RouteLookup result;
    std::vector<asio::steady_timer*> waiters;
    std::uint64_t generation = 0;     // of the invalidation link when the read started
    std::uint64_t invalidations = 0;  // invalidations_ when the read started
  };

  bool may_join(const Flight& flight) {
    if (flight.generation != generation_ || flight.invalidations != invalidations_) return false;
    return !(tracking_active_ && invalidation_unread());
  }

  // Whether an invalidation sits unread on the subscriber socket (the write was just
  // acknowledged to its author, who may already be sending the request that must see it).
  // Asked once per batch of ready events rather than once per request: the answer is kept until
  // a posted reset runs, which the event loop does before it handles the next batch. A request
  // whose readiness this batch reports was sent before the check, so an invalidation its author
  // waited for was already on the socket then. (Bytes that arrive later in the batch and are
  // read at once, pipelined behind others, can miss one by the rest of the batch: well inside
  // the ~1 ms the issue allows.)
  bool invalidation_unread() {
    if (!unread_checked_) {
      unread_ = subscriber_->has_unread_input();
      unread_checked_ = true;
      asio::post(executor_, [weak = weak_from_this()] {
        if (auto self = weak.lock()) self->unread_checked_ = false;
      });
    }
    return unread_;
  }

  RouteLookup with_local_marks(const std::string& host, RouteLookup lookup) {
    if (lookup.status == RouteLookup::Status::found) {
      if (auto marked = locally_marked(host, *lookup.route)) lookup.route = std::move(marked);
    }
    return lookup;
  }

  routing::RouteCache::Entry const* any_entry(const std::string& host) {
    if (const auto* entry = positive_.find(host)) return entry;
    return negative_.find(host);
  }

  // An entry may answer without Redis: in live mode while the link that vouches for it is up,
  // in lruCache mode until its TTL.
  routing::RouteCache::Entry const* fresh_entry(const std::string& host) {
    const auto* entry = any_entry(host);
    if (entry == nullptr) return nullptr;
    const auto now = Clock::now();
    if (now >= entry->expires) return nullptr;
    if (tracking_active_ && entry->generation == generation_) {
      // An invalidation may be sitting unread on the subscriber socket: then read Redis
      // rather than trust the entry.
      return invalidation_unread() ? nullptr : entry;
    }
    if (!tracking_active_ && lru_ttl_ && entry->generation == kLruGeneration) return entry;
    return nullptr;
  }

  void remember(const std::string& host, const RouteLookup& lookup, bool vouched_by_tracking) {
    auto& cache = lookup.status == RouteLookup::Status::found ? positive_ : negative_;
    const auto now = Clock::now();
    if (vouched_by_tracking) {
      const bool any_dead =
          lookup.route && std::any_of(lookup.route->backends.begin(), lookup.route->backends.end(),
                                      [](const Backend& b) { return b.dead; });
      cache.insert(host, lookup, now + (any_dead ? kDeadEntryLifetime : kLiveEntryLifetime),
                   generation_);
    } else if (lru_ttl_) {
      cache.insert(host, lookup, now + *lru_ttl_, kLruGeneration);
    }
  }

  // Invalidation link lost (subscriber or reader connection): nothing cached is vouched for
  // any more. Entries stay only as a last resort while Redis cannot be read at all.
  void link_lost() {
    if (tracking_active_) spdlog::info("route cache: invalidation link lost; reading Redis");
    tracking_active_ = false;
    ++generation_;
  }

  void subscribe() {
    std::vector<RedisCommand> commands{{"CLIENT", "ID"}, {"SUBSCRIBE", kInvalidationChannel}};
    std::weak_ptr<RedisRouteStore> weak = shared_from_this();
    subscriber_->async_exec(std::move(commands),
                            [weak](boost::system::error_code ec, RedisReplies replies) {
                              auto self = weak.lock();
                              if (!self || ec || replies.size() != 2) return;
                              if (replies[0].kind != RedisReply::Kind::integer) {
                                self->tracking_unsupported("CLIENT ID: " + replies[0].text);
                                return;
                              }
                              self->subscriber_id_ = std::to_string(replies[0].integer);
                              self->enable_tracking();
                            });
  }

  void enable_tracking() {
    if (!subscriber_ || unsupported_ || subscriber_id_.empty() || !reader_->connected()) return;
    // off first: re-enabling with a new REDIRECT target is refused while tracking is on.
    std::vector<RedisCommand> commands{
        {"CLIENT", "TRACKING", "off"},
        {"CLIENT", "TRACKING", "on", "REDIRECT", subscriber_id_, "BCAST", "PREFIX",
         read_prefix_ + "frontend:", "PREFIX", read_prefix_ + "dead:"}};
    std::weak_ptr<RedisRouteStore> weak = shared_from_this();
    const auto generation = generation_;
    const auto redirect = subscriber_id_;
    reader_->async_exec(
        std::move(commands),
        [weak, generation, redirect](boost::system::error_code ec, RedisReplies replies) {
          auto self = weak.lock();
          if (!self || ec || replies.size() != 2) return;
          if (replies[1].kind == RedisReply::Kind::error) {
            // A stale REDIRECT (the subscriber reconnected meanwhile) is retried by its own hook.
            if (redirect == self->subscriber_id_) {
              self->tracking_unsupported("CLIENT TRACKING: " + replies[1].text);
            }
            return;
          }
          if (generation != self->generation_) return;  // a connection dropped meanwhile
          ++self->generation_;
          self->tracking_active_ = true;
          spdlog::info("route cache: live (Redis client-side caching)");
        });
  }

  void tracking_unsupported(const std::string& why) {
    if (unsupported_) return;
    unsupported_ = true;
    spdlog::warn("route cache off, Redis is read on every request: {}", why);
    subscriber_->stop();
  }

  // ["message", "__redis__:invalidate", keys] where keys is an array, or nil for FLUSHALL.
  void invalidate(const RedisReply& message) {
    ++invalidations_;
    const auto& payload = message.elements[2];
    if (payload.kind != RedisReply::Kind::array) {
      positive_.clear();
      negative_.clear();
      return;
    }
    for (const auto& key : payload.elements) {
      std::string_view name = key.text;
      if (name.substr(0, read_prefix_.size()) != read_prefix_) continue;
      name.remove_prefix(read_prefix_.size());
      if (name.substr(0, 9) == "frontend:") {
        name.remove_prefix(9);
        if (name == "*" || name.substr(0, 2) == "*.") {
          // A wildcard can route many cached hosts (and unknown ones): start over.
          positive_.clear();
          negative_.clear();
          return;
        }
        positive_.erase(std::string(name));
        negative_.erase(std::string(name));
      } else if (name.substr(0, 5) == "dead:") {
        positive_.erase(std::string(name.substr(5)));
      }
    }
  }

  struct LocalMark {
    std::size_t index;
    Clock::time_point expires;
  };

  // This worker's own marks apply to its next request at once, without waiting for Redis to
  // echo them back (and even when the write failed).
  void remember_local_mark(const std::string& host, std::size_t index) {
    auto& marks = local_marks_[host];
    const auto expires = Clock::now() + dead_ttl_duration_;
    for (auto& mark : marks) {
      if (mark.index == index) {
        mark.expires = expires;
        return;
      }
    }
    marks.push_back({index, expires});
  }

  // `route` with this worker's unexpired dead marks for `host` applied, as a copy (the cached
  // route is shared); nullptr when there are none, which is nearly always.
  std::shared_ptr<const Route> locally_marked(const std::string& host, const Route& route) {
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

  // At most one log line per kErrorLogInterval: a broken key must not flood the log.
  void report_error_reply(const std::string& host, const std::string& error) {
    const auto now = Clock::now();
    if (now < next_error_log_) return;
    next_error_log_ = now + kErrorLogInterval;
    spdlog::error("redis error reading the route of {}: {}", host, error);
  }

  // Kept out of the coroutine: GCC 12 mishandles some temporaries inside coroutine bodies.
  void update_passive_checks(const RedisReply& ping) {
    bool fresh = false;
    if (ping.kind == RedisReply::Kind::string) {
      const auto stamp = parse_integer(ping.text);
      const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
      fresh = stamp && now - *stamp < kHcheckerFreshSeconds;
    }
    if (fresh == passive_enabled_) {
      spdlog::info("passive health checks {}",
                   fresh ? "off: hchecker_ping is fresh" : "on: hchecker_ping is stale or absent");
    }
    passive_enabled_ = !fresh;
  }

  // A subscriber sends nothing by itself, so a link dropped silently (NAT, firewall) would go
  // unnoticed while the cache trusts it. A PING every few seconds is answered even in subscribed
  // mode; the connection's reply watchdog resets the link when the answer does not come.
  static asio::awaitable<void> heartbeat(std::shared_ptr<RedisRouteStore> self) {
    asio::steady_timer timer(self->executor_);
    while (!self->stopped_) {
      timer.expires_after(kHeartbeatInterval);
      co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
      if (self->stopped_ || self->unsupported_ || !self->subscriber_->connected()) continue;
      co_await self->subscriber_->async_exec(ping_command(), asio::as_tuple(asio::use_awaitable));
    }
  }

  static std::vector<RedisCommand> ping_command() { return {RedisCommand{"PING"}}; }

  static std::vector<RedisCommand> hchecker_ping_command() {
    return {RedisCommand{"GET", kHcheckerPingKey}};
  }

  static asio::awaitable<void> poll_hchecker(std::shared_ptr<RedisRouteStore> self) {
    asio::steady_timer timer(self->executor_);
    while (!self->stopped_) {
      auto [ec, replies] = co_await self->reader_->async_exec(hchecker_ping_command(),
                                                              asio::as_tuple(asio::use_awaitable));
      if (!ec && !replies.empty()) self->update_passive_checks(replies.front());
      timer.expires_after(kHcheckerPollInterval);
      co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }

  asio::any_io_executor executor_;
  std::shared_ptr<RedisConnection> reader_;
  std::shared_ptr<RedisConnection> writer_;
  std::string read_prefix_;
  std::string write_prefix_;
  std::string dead_ttl_;
  std::chrono::seconds dead_ttl_duration_;
  bool passive_enabled_ = true;
  bool stopped_ = false;
  std::unordered_map<std::string, std::vector<LocalMark>> local_marks_;
  Clock::time_point next_error_log_{};

  // Live route cache state.
  bool live_cache_;
  std::shared_ptr<RedisConnection> subscriber_;
  std::string subscriber_id_;     // CLIENT ID of the subscriber, the REDIRECT target
  bool tracking_active_ = false;  // invalidations flow: cached entries may answer
  bool unsupported_ = false;      // the server refused tracking: per-request reads for good
  std::uint64_t generation_ = 0;  // changes whenever the link goes down or comes up
  std::uint64_t invalidations_ = 0;
  bool unread_checked_ = false;  // invalidation_unread() asked in this batch of events
  bool unread_ = false;          // its answer
  std::optional<std::chrono::milliseconds> lru_ttl_;
  routing::RouteCache positive_;
  routing::RouteCache negative_;
  std::unordered_map<std::string, std::shared_ptr<Flight>> flights_;
};

}  // namespace

std::shared_ptr<RouteStore> make_redis_route_store(asio::any_io_executor executor,
                                                   const Config& config) {
  auto store = std::make_shared<RedisRouteStore>(executor, config);
  store->start();
  return store;
}

}  // namespace hipache::store
