// The store a worker uses, wired: the route cache (caching_route_store.hpp) in front of routes
// read from Redis (redis_route_source.hpp), and dead marks through the cache to Redis
// (redis_health.hpp). Reads go to the first driver URL, dead marks to the last.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "hipache/config.hpp"
#include "hipache/route_store.hpp"

namespace hipache::store {

class CachingRouteStore;
class RedisConnection;
class RedisHealth;
class RedisRouteSource;
class SentinelWatcher;

class RedisRouteStore {
 public:
  RedisRouteStore(boost::asio::any_io_executor executor, const Config& config);
  ~RedisRouteStore();
  RedisRouteStore(const RedisRouteStore&) = delete;
  RedisRouteStore& operator=(const RedisRouteStore&) = delete;

  RouteStore& routes();
  BackendHealth& health();  // applies a mark locally too
  void stop();              // closes the Redis connections

  // Metrics (metrics/record.hpp): the route caches' size and the Redis link's state.
  void report_metrics() const;
  // For the status page: the backends in the dead: sets of `hosts` and of the dead: keys one
  // SCAN step finds, at most `limit` frontends, each backend by its URL. Empty if Redis fails.
  struct DeadBackends {
    std::string frontend;
    std::vector<std::string> backends;
  };
  boost::asio::awaitable<std::vector<DeadBackends>> dead_backends(std::vector<std::string> hosts,
                                                                  std::size_t limit);

 private:
  void watch_sentinels(boost::asio::any_io_executor executor, const Config& config,
                       std::chrono::milliseconds timeout);

  std::shared_ptr<RedisConnection> reader_;
  std::shared_ptr<RedisConnection> writer_;
  std::shared_ptr<RedisConnection> subscriber_;
  std::shared_ptr<RedisRouteSource> source_;
  std::shared_ptr<RedisHealth> redis_health_;
  std::unique_ptr<CachingRouteStore> cache_;
  std::string prefix_;
  std::vector<std::shared_ptr<SentinelWatcher>> watchers_;  // redis-sentinel:// URLs
};

}  // namespace hipache::store
