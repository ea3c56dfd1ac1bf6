#include "store/redis_health.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>

#include "metrics/record.hpp"

namespace hipache::store {

namespace {

using namespace std::chrono_literals;

// An external checker writes its Unix time here; passive checks pause while it is fresh.
constexpr const char* kHcheckerPingKey = "hchecker_ping";
constexpr auto kHcheckerPollInterval = 5s;
constexpr long long kHcheckerFreshSeconds = 30;
constexpr const char* kDeadChannel = "dead";

std::vector<RedisCommand> hchecker_ping_command() {
  return {RedisCommand{"GET", kHcheckerPingKey}};
}

}  // namespace

RedisHealth::RedisHealth(asio::any_io_executor executor, std::shared_ptr<RedisConnection> reader,
                         std::shared_ptr<RedisConnection> writer, std::string prefix,
                         unsigned dead_ttl_seconds)
    : executor_(std::move(executor)),
      reader_(std::move(reader)),
      writer_(std::move(writer)),
      prefix_(std::move(prefix)),
      dead_ttl_(std::to_string(dead_ttl_seconds)) {}

void RedisHealth::start() {
  asio::co_spawn(executor_, poll_hchecker(shared_from_this()), asio::detached);
}

// One transaction: the dead set (while passive checks are on) and the announcement on the
// `dead` channel that hchecker listens to ("host;url;index;count").
void RedisHealth::mark_dead(const std::string& host, const Route& route, std::size_t index) {
  if (!can_mark_dead(route, index)) return;
  metrics::add(metrics::Counter::dead_marks);
  std::vector<RedisCommand> commands;
  commands.push_back({"MULTI"});
  if (passive_enabled_) {
    const auto key = prefix_ + "dead:" + host;
    commands.push_back({"SADD", key, std::to_string(index)});
    commands.push_back({"EXPIRE", key, dead_ttl_});
  }
  commands.push_back({"PUBLISH", kDeadChannel,
                      host + ";" + route.backends[index].url + ";" + std::to_string(index) + ";" +
                          std::to_string(route.backends.size())});
  commands.push_back({"EXEC"});
  writer_->async_exec(std::move(commands), [host](boost::system::error_code ec, RedisReplies) {
    if (ec) spdlog::warn("could not record dead backend for {}: {}", host, ec.message());
  });
}

// Kept out of the coroutine: GCC 12 mishandles some temporaries inside coroutine bodies.
void RedisHealth::update_passive_checks(const RedisReply& ping) {
  bool fresh = false;
  if (ping.kind == RedisReply::Kind::string) {
    const auto stamp = ping.text_as_integer();
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

asio::awaitable<void> RedisHealth::poll_hchecker(std::shared_ptr<RedisHealth> self) {
  asio::steady_timer timer(self->executor_);
  while (!self->stopped_) {
    auto [ec, replies] = co_await self->reader_->async_exec(hchecker_ping_command(),
                                                            asio::as_tuple(asio::use_awaitable));
    if (!ec && !replies.empty()) self->update_passive_checks(replies.front());
    timer.expires_after(kHcheckerPollInterval);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

}  // namespace hipache::store
