// The built-in active health checker (server.activeHealthCheck, docs/operations.md). It speaks
// hipache-hchecker's Redis protocol, so it can replace hchecker or run beside it:
//   - it listens on the `dead` channel, where proxies announce the backends they mark dead;
//   - per backend URL it takes the lock in `<prefix>hchecker` (check_lock.hpp): one checker in
//     the whole fleet checks a backend, and a lock left by a crashed node expires;
//   - it checks the backend every `interval` (http_probe.hpp); while it fails, the backend's
//     index is in `<prefix>dead:<frontend>` (SADD + EXPIRE, renewed) for every frontend that
//     reported it; once it answers, the index is removed (SREM);
//   - it keeps `hchecker_ping` at the current Unix time, so that proxies leave the dead sets to
//     it (SPEC section 6).
// One per node, in a process of its own (process/checker_child.hpp), single-threaded.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "health/dead_message.hpp"
#include "health/http_probe.hpp"
#include "hipache/config.hpp"
#include "proxy/upstream_pool.hpp"
#include "store/redis_connection.hpp"

namespace hipache::health {

class ActiveChecker : public std::enable_shared_from_this<ActiveChecker> {
 public:
  // `owner`: this checker's lock owner name (lock_owner()).
  ActiveChecker(boost::asio::any_io_executor executor, const Config& config, std::string owner);

  void start();
  // Stops checking, lets every lock go (so another node takes over at its next report) and
  // closes the Redis connections.
  boost::asio::awaitable<void> stop();

 private:
  struct Watched;
  using Frontends = std::vector<std::pair<std::string, std::size_t>>;  // name, index; in order

  void on_message(const store::RedisReply& message);
  void subscribe();
  boost::asio::awaitable<void> take(DeadMessage message);
  boost::asio::awaitable<void> watch(std::shared_ptr<Watched> watched);
  boost::asio::awaitable<bool> check_once(Watched& watched);
  boost::asio::awaitable<bool> keep_listed(Watched& watched);
  boost::asio::awaitable<void> write_marks(Watched& watched, bool dead);
  boost::asio::awaitable<bool> renew(Watched& watched);
  boost::asio::awaitable<std::string> swap(const std::string& url, const std::string& expected,
                                           const std::string& desired, bool& answered);
  boost::asio::awaitable<void> ping_loop();
  ProbeRequest probe_request(const Watched& watched) const;
  std::vector<store::RedisCommand> mark_commands(const Watched& watched, bool dead) const;
  std::vector<store::RedisCommand> listing_of(const Watched& watched) const;
  std::vector<store::RedisCommand> release_commands();
  boost::asio::awaitable<void> take_slot();
  void give_slot();
  std::string new_lock_value() const;
  void forget(const std::string& url);

  boost::asio::any_io_executor executor_;
  ActiveHealthCheckSettings settings_;
  std::string prefix_;
  std::string owner_;
  std::string lock_hash_;
  std::chrono::milliseconds interval_;
  std::chrono::milliseconds timeout_;
  std::int64_t lock_hold_s_;  // written into a lock: lockTtl plus one check cycle
  std::int64_t mark_ttl_s_;   // EXPIRE of a dead set we write
  std::shared_ptr<store::RedisConnection> redis_;
  std::shared_ptr<store::RedisConnection> subscriber_;
  proxy::UpstreamPool pool_;
  std::unordered_map<std::string, std::shared_ptr<Watched>> watched_;  // by backend URL
  std::unordered_map<std::string, Frontends> taking_;  // lock attempts under way, by URL
  unsigned in_flight_ = 0;
  std::deque<boost::asio::steady_timer*> slot_waiters_;
  std::chrono::steady_clock::time_point next_full_warning_{};
  bool subscribed_ = false;  // SUBSCRIBE dead answered on the current subscriber connection
  bool stopped_ = false;
};

}  // namespace hipache::health
