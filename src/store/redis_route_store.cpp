#include "store/redis_route_store.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "metrics/record.hpp"

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
  prefix_ = config.read_endpoint.prefix;
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

void RedisRouteStore::report_metrics() const {
  metrics::set(metrics::Gauge::route_cache_entries, static_cast<std::int64_t>(cache_->size()));
  metrics::set(metrics::Gauge::route_cache_bytes, static_cast<std::int64_t>(cache_->bytes()));
  metrics::set(metrics::Gauge::redis_up, reader_->connected() ? 1 : 0);
}

namespace {
constexpr auto kUseTuple = boost::asio::as_tuple(boost::asio::use_awaitable);
constexpr std::string_view kScanCount = "1000";  // keys one SCAN step looks at, at most
}  // namespace

boost::asio::awaitable<std::vector<RedisRouteStore::DeadBackends>> RedisRouteStore::dead_backends(
    std::vector<std::string> hosts, std::size_t limit) {
  const std::string dead_prefix = prefix_ + "dead:";
  // Built before the co_await: GCC 12 cannot keep a braced list's array across a suspension.
  std::vector<RedisCommand> scan_command(1);
  scan_command[0] = {"SCAN", "0", "MATCH", dead_prefix + "*", "COUNT", std::string(kScanCount)};
  auto [scan_ec, scan] = co_await reader_->async_exec(std::move(scan_command), kUseTuple);
  if (!scan_ec && scan.size() == 1 && scan[0].elements.size() == 2) {
    for (const auto& key : scan[0].elements[1].elements) {
      if (key.text.starts_with(dead_prefix)) hosts.push_back(key.text.substr(dead_prefix.size()));
    }
  }
  std::sort(hosts.begin(), hosts.end());
  hosts.erase(std::unique(hosts.begin(), hosts.end()), hosts.end());
  if (hosts.size() > limit) hosts.resize(limit);
  std::vector<RedisCommand> commands;
  for (const auto& host : hosts) {
    commands.push_back({"SMEMBERS", dead_prefix + host});
    commands.push_back({"LRANGE", prefix_ + "frontend:" + host, "0", "-1"});
  }
  std::vector<DeadBackends> out;
  if (commands.empty()) co_return out;
  auto [ec, replies] = co_await reader_->async_exec(std::move(commands), kUseTuple);
  if (ec || replies.size() != hosts.size() * 2) co_return out;
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    const auto& members = replies[2 * i].elements;
    const auto& entries = replies[2 * i + 1].elements;  // [identifier, backend URL...]
    DeadBackends dead{hosts[i], {}};
    for (const auto& member : members) {
      const auto index = member.text_as_integer();
      const bool known =
          index && *index >= 0 && static_cast<std::size_t>(*index) + 1 < entries.size();
      dead.backends.push_back(known ? entries[static_cast<std::size_t>(*index) + 1].text
                                    : "#" + member.text);
    }
    if (!dead.backends.empty()) out.push_back(std::move(dead));
  }
  co_return out;
}

}  // namespace hipache::store
