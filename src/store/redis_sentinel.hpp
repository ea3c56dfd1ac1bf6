// Redis Sentinel (redis-sentinel:// URLs): where the master is, and when it moves. Every data
// connection asks the sentinels in turn on each (re)connect (ask_sentinels); one watcher per
// worker and URL listens to a sentinel's +switch-master channel and moves the connections to the
// new master at once instead of waiting for them to notice the old one is gone.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hipache/config.hpp"
#include "store/redis_connection.hpp"

namespace boost::asio::ssl {
class context;
}

namespace hipache::store {

// SENTINEL get-master-addr-by-name, asked of each sentinel in the URL's order until one answers
// with an address. nullopt (and `why`) when none does.
boost::asio::awaitable<std::optional<RedisAddress>> ask_sentinels(
    boost::asio::any_io_executor executor, const RedisEndpoint& endpoint,
    std::shared_ptr<boost::asio::ssl::context> tls, std::chrono::milliseconds timeout,
    std::string& why);

// A sentinel's "+switch-master" payload: "<name> <old ip> <old port> <new ip> <new port>".
// The new address when it is about `master_name`.
std::optional<RedisAddress> parse_switch_master(std::string_view payload,
                                                std::string_view master_name);

class SentinelWatcher : public std::enable_shared_from_this<SentinelWatcher> {
 public:
  // `followers`: the connections to move when the master named by `endpoint` changes.
  SentinelWatcher(boost::asio::any_io_executor executor, const RedisEndpoint& endpoint,
                  std::chrono::milliseconds timeout,
                  std::vector<std::shared_ptr<RedisConnection>> followers);
  void start();
  void stop();

 private:
  void subscribe();
  void follow(const RedisAddress& master, const char* why);

  RedisEndpoint endpoint_;
  std::shared_ptr<RedisConnection> connection_;  // to one sentinel at a time
  std::size_t current_ = 0;                      // index of that sentinel
  std::vector<std::shared_ptr<RedisConnection>> followers_;
};

}  // namespace hipache::store
