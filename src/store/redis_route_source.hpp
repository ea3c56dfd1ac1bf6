// Routes read from Redis (SPEC section 3), and the invalidation link that keeps a cache of them
// live: the reader connection runs CLIENT TRACKING in broadcast mode for the frontend:/dead:
// prefixes, redirected (RESP2) to a subscriber connection whose messages go to the sink. A read
// server that is a replica with its master link down counts as a lost link.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "store/redis_connection.hpp"
#include "store/route_source.hpp"

namespace hipache::store {

class RedisRouteSource final : public RouteSource,
                               public std::enable_shared_from_this<RedisRouteSource> {
 public:
  // `subscriber` null: no invalidation link (the live cache is off), only reads.
  RedisRouteSource(boost::asio::any_io_executor executor, std::shared_ptr<RedisConnection> reader,
                   std::shared_ptr<RedisConnection> subscriber, std::string prefix);

  void start();  // installs the connection hooks and starts the connections
  void stop();

  boost::asio::awaitable<RouteLookup> read(const std::string& host) override;
  bool invalidation_pending() override;
  void set_sink(InvalidationSink* sink) override { sink_ = sink; }

 private:
  void link_lost();
  void subscribe();
  void enable_tracking();
  void tracking_unsupported(const std::string& why);
  void on_message(const RedisReply& message);
  void report_error_reply(const std::string& host, const std::string& error);
  static boost::asio::awaitable<void> heartbeat(std::shared_ptr<RedisRouteSource> self);
  // A replica whose link to its master is down serves stale data and misses invalidations.
  static boost::asio::awaitable<void> watch_replica_link(std::shared_ptr<RedisRouteSource> self);
  void replica_link_changed(bool down);

  boost::asio::any_io_executor executor_;
  std::shared_ptr<RedisConnection> reader_;
  std::shared_ptr<RedisConnection> subscriber_;
  std::string prefix_;
  InvalidationSink* sink_ = nullptr;
  bool stopped_ = false;
  std::string subscriber_id_;     // CLIENT ID of the subscriber, the REDIRECT target
  bool tracking_active_ = false;  // the sink was told link_up() and not link_lost() since
  bool unsupported_ = false;      // the server refused tracking: per-request reads for good
  std::uint64_t link_epoch_ = 0;  // changes whenever the link goes down or comes up
  bool pending_checked_ = false;  // invalidation_pending() asked in this batch of events
  bool pending_ = false;          // its answer
  std::chrono::steady_clock::time_point next_error_log_{};
  bool replica_link_down_ = false;  // INFO replication: master_link_status:down
};

}  // namespace hipache::store
