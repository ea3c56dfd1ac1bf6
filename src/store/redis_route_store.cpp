#include "store/redis_route_store.hpp"

#include "store/caching_route_store.hpp"
#include "store/redis_connection.hpp"
#include "store/redis_health.hpp"
#include "store/redis_route_source.hpp"
#include "store/redis_sentinel.hpp"

namespace hipache::store {

RedisRouteStore::RedisRouteStore(boost::asio::any_io_executor executor, const Config& config) {
  const auto timeout =
      std::chrono::milliseconds(static_cast<long long>(config.server.redis_timeout_s * 1000));
  reader_ = std::make_shared<RedisConnection>(executor, config.read_endpoint, "read", timeout);
  const bool same = config.driver.size() == 1 || config.driver.front() == config.driver.back();
  writer_ =
      same ? reader_
           : std::make_shared<RedisConnection>(executor, config.write_endpoint, "write", timeout);
  if (config.server.route_cache) {
    subscriber_ =
        std::make_shared<RedisConnection>(executor, config.read_endpoint, "invalidations", timeout);
  }
  source_ = std::make_shared<RedisRouteSource>(executor, reader_, subscriber_,
                                               config.read_endpoint.prefix);
  redis_health_ = std::make_shared<RedisHealth>(
      executor, reader_, writer_, config.write_endpoint.prefix, config.server.dead_backend_ttl_s);
  cache_ = std::make_unique<CachingRouteStore>(source_, *redis_health_,
                                               RouteCacheSettings::from(config));
  watch_sentinels(executor, config, timeout);
  source_->start();
  redis_health_->start();
}

// One watcher per sentinel URL, moving the connections that use it.
void RedisRouteStore::watch_sentinels(boost::asio::any_io_executor executor, const Config& config,
                                      std::chrono::milliseconds timeout) {
  std::vector<std::shared_ptr<RedisConnection>> readers{reader_};  // the writer too if shared
  if (subscriber_) readers.push_back(subscriber_);
  if (!config.read_endpoint.sentinels.empty()) {
    watchers_.push_back(
        std::make_shared<SentinelWatcher>(executor, config.read_endpoint, timeout, readers));
  }
  if (writer_ != reader_ && !config.write_endpoint.sentinels.empty()) {
    watchers_.push_back(
        std::make_shared<SentinelWatcher>(executor, config.write_endpoint, timeout,
                                          std::vector<std::shared_ptr<RedisConnection>>{writer_}));
  }
  for (const auto& watcher : watchers_) watcher->start();
}

RedisRouteStore::~RedisRouteStore() = default;

RouteStore& RedisRouteStore::routes() {
  return *cache_;
}

BackendHealth& RedisRouteStore::health() {
  return *cache_;
}

void RedisRouteStore::stop() {
  for (const auto& watcher : watchers_) watcher->stop();
  source_->stop();
  redis_health_->stop();
  if (subscriber_) subscriber_->stop();
  reader_->stop();
  writer_->stop();
}

}  // namespace hipache::store
