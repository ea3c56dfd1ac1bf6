#include "store/redis_route_store.hpp"

#include "store/caching_route_store.hpp"
#include "store/redis_connection.hpp"
#include "store/redis_health.hpp"
#include "store/redis_route_source.hpp"

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
  source_->start();
  redis_health_->start();
}

RedisRouteStore::~RedisRouteStore() = default;

RouteStore& RedisRouteStore::routes() {
  return *cache_;
}

BackendHealth& RedisRouteStore::health() {
  return *cache_;
}

void RedisRouteStore::stop() {
  source_->stop();
  redis_health_->stop();
  if (subscriber_) subscriber_->stop();
  reader_->stop();
  writer_->stop();
}

}  // namespace hipache::store
