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
#include "routing/lru_route_cache.hpp"
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

class RedisRouteStore final : public RouteStore,
                              public std::enable_shared_from_this<RedisRouteStore> {
 public:
  RedisRouteStore(asio::any_io_executor executor, const Config& config)
      : executor_(executor),
        read_prefix_(config.read_endpoint.prefix),
        write_prefix_(config.write_endpoint.prefix),
        dead_ttl_(std::to_string(config.server.dead_backend_ttl_s)),
        dead_ttl_duration_(std::chrono::seconds(config.server.dead_backend_ttl_s)) {
    if (config.server.lru_cache) {
      lru_.emplace(config.server.lru_cache->size,
                   std::chrono::milliseconds(
                       static_cast<long long>(config.server.lru_cache->ttl_seconds * 1000)));
    }
    reader_ = std::make_shared<RedisConnection>(executor, config.read_endpoint, "read");
    const bool same = config.driver.size() == 1 || config.driver.front() == config.driver.back();
    writer_ = same ? reader_
                   : std::make_shared<RedisConnection>(executor, config.write_endpoint, "write");
  }

  void start() {
    reader_->start();
    asio::co_spawn(executor_, poll_hchecker(shared_from_this()), asio::detached);
  }

  asio::awaitable<RouteLookup> lookup(const std::string& host) override {
    if (lru_) {
      if (const auto* cached = lru_->find(host, Clock::now())) {
        RouteLookup copy = *cached;
        if (copy.status == RouteLookup::Status::found) apply_local_marks(host, copy.route);
        co_return copy;
      }
    }
    auto result = co_await read_route(host);
    if (lru_ && result.status != RouteLookup::Status::unavailable) {
      lru_->insert(host, result, Clock::now());
    }
    co_return result;
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
    // An error reply (NOAUTH, WRONGTYPE on a malformed key, ...) means the routing table could
    // not be read: a store failure (503), never "no such frontend".
    for (const auto& reply : replies) {
      if (reply.kind == RedisReply::Kind::error) {
        report_error_reply(host, reply.text);
        result.status = RouteLookup::Status::unavailable;
        co_return result;
      }
    }
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      const auto& reply = replies[i];
      if (reply.kind != RedisReply::Kind::array || reply.elements.empty()) continue;
      result.status = RouteLookup::Status::found;
      auto& route = result.route;
      route.frontend_key = candidates[i];
      route.identifier = reply.elements.front().text;
      for (std::size_t b = 1; b < reply.elements.size(); ++b) {
        route.backends.push_back(parse_backend_url(reply.elements[b].text));
      }
      route.dead.assign(route.backends.size(), false);
      const auto& dead = replies.back();
      for (const auto& member : dead.elements) {
        const auto index = parse_integer(member.text);
        if (index && *index >= 0 && static_cast<std::size_t>(*index) < route.dead.size()) {
          route.dead[static_cast<std::size_t>(*index)] = true;
        }
      }
      apply_local_marks(host, route);
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
                        host + ";" + route.backends[index].url + ";" + std::to_string(index) +
                            ";" + std::to_string(count)});
    commands.push_back({"EXEC"});
    writer_->async_exec(std::move(commands), [host](boost::system::error_code ec, RedisReplies) {
      if (ec) spdlog::warn("could not record dead backend for {}: {}", host, ec.message());
    });
  }

  bool passive_checks_enabled() const override { return passive_enabled_; }

  void stop() override {
    stopped_ = true;
    reader_->stop();
    writer_->stop();
  }

 private:
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

  void apply_local_marks(const std::string& host, Route& route) {
    const auto it = local_marks_.find(host);
    if (it == local_marks_.end()) return;
    const auto now = Clock::now();
    auto& marks = it->second;
    std::erase_if(marks, [&](const LocalMark& m) { return m.expires <= now; });
    for (const auto& mark : marks) {
      if (mark.index < route.dead.size()) route.dead[mark.index] = true;
    }
    if (marks.empty()) local_marks_.erase(it);
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
      spdlog::info("passive health checks {}", fresh ? "off: hchecker_ping is fresh"
                                                     : "on: hchecker_ping is stale or absent");
    }
    passive_enabled_ = !fresh;
  }

  static std::vector<RedisCommand> hchecker_ping_command() {
    return {RedisCommand{"GET", kHcheckerPingKey}};
  }

  static asio::awaitable<void> poll_hchecker(std::shared_ptr<RedisRouteStore> self) {
    asio::steady_timer timer(self->executor_);
    while (!self->stopped_) {
      auto [ec, replies] = co_await self->reader_->async_exec(
          hchecker_ping_command(), asio::as_tuple(asio::use_awaitable));
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
  std::optional<routing::LruRouteCache> lru_;
  Clock::time_point next_error_log_{};
};

}  // namespace

std::shared_ptr<RouteStore> make_redis_route_store(asio::any_io_executor executor,
                                                   const Config& config) {
  auto store = std::make_shared<RedisRouteStore>(executor, config);
  store->start();
  return store;
}

}  // namespace hipache::store
