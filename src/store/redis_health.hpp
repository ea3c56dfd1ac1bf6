// Passive health checks through Redis (SPEC section 6): a failed backend is added to the
// frontend's dead set with a TTL and announced on the `dead` channel, the way Hipache and
// hipache-hchecker do; while an external checker keeps `hchecker_ping` fresh, only the
// announcement is made.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <memory>
#include <string>

#include "hipache/route_store.hpp"
#include "store/redis_connection.hpp"

namespace hipache::store {

class RedisHealth final : public BackendHealth, public std::enable_shared_from_this<RedisHealth> {
 public:
  // Marks go to `writer` under `prefix`; `reader` is polled for hchecker_ping.
  RedisHealth(boost::asio::any_io_executor executor, std::shared_ptr<RedisConnection> reader,
              std::shared_ptr<RedisConnection> writer, std::string prefix,
              unsigned dead_ttl_seconds);

  void start();
  void stop() { stopped_ = true; }

  void mark_dead(const std::string& host, const Route& route, std::size_t index) override;
  bool passive_checks_enabled() const override { return passive_enabled_; }

 private:
  void update_passive_checks(const RedisReply& ping);
  static boost::asio::awaitable<void> poll_hchecker(std::shared_ptr<RedisHealth> self);

  boost::asio::any_io_executor executor_;
  std::shared_ptr<RedisConnection> reader_;
  std::shared_ptr<RedisConnection> writer_;
  std::string prefix_;
  std::string dead_ttl_;
  bool passive_enabled_ = true;
  bool stopped_ = false;
};

}  // namespace hipache::store
