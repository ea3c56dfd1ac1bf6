#include "store/redis_route_source.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "hipache/router.hpp"

namespace hipache::store {

namespace {

using namespace std::chrono_literals;

constexpr const char* kInvalidationChannel = "__redis__:invalidate";
constexpr auto kHeartbeatInterval = 3s;
constexpr auto kErrorLogInterval = 10s;
constexpr auto kReplicaLinkPollInterval = 1s;

std::vector<RedisCommand> ping_command() {
  return {RedisCommand{"PING"}};
}

// "master_link_status:down" in INFO replication's text; absent on a master.
bool master_link_down(const RedisReply& info) {
  return info.kind == RedisReply::Kind::string &&
         info.text.find("master_link_status:down") != std::string::npos;
}

}  // namespace

RedisRouteSource::RedisRouteSource(asio::any_io_executor executor,
                                   std::shared_ptr<RedisConnection> reader,
                                   std::shared_ptr<RedisConnection> subscriber, std::string prefix)
    : executor_(std::move(executor)),
      reader_(std::move(reader)),
      subscriber_(std::move(subscriber)),
      prefix_(std::move(prefix)) {}

void RedisRouteSource::start() {
  if (subscriber_) {
    std::weak_ptr<RedisRouteSource> weak = shared_from_this();
    const auto link_lost = [weak] {
      if (auto self = weak.lock()) self->link_lost();
    };
    subscriber_->set_keep_connected(true);
    subscriber_->set_push_handler([weak](RedisReply message) {
      if (auto self = weak.lock()) self->on_message(message);
    });
    subscriber_->set_on_connected([weak] {
      if (auto self = weak.lock()) self->subscribe();
    });
    subscriber_->set_on_disconnected([weak, link_lost] {
      if (auto self = weak.lock()) self->subscriber_id_.clear();
      link_lost();
    });
    reader_->set_on_connected([weak] {
      if (auto self = weak.lock()) self->enable_tracking();
    });
    reader_->set_on_disconnected(link_lost);
    subscriber_->start();
    asio::co_spawn(executor_, heartbeat(shared_from_this()), asio::detached);
  }
  asio::co_spawn(executor_, watch_replica_link(shared_from_this()), asio::detached);
  reader_->start();
}

void RedisRouteSource::stop() {
  stopped_ = true;
  if (subscriber_) subscriber_->stop();
}

// One round trip: LRANGE of every candidate and SMEMBERS of the exact host's dead set.
asio::awaitable<RouteLookup> RedisRouteSource::read(const std::string& host) {
  const auto candidates = host_candidates(host);
  std::vector<RedisCommand> commands;
  commands.reserve(candidates.size() + 1);
  for (const auto& candidate : candidates) {
    commands.push_back({"LRANGE", prefix_ + "frontend:" + candidate, "0", "-1"});
  }
  commands.push_back({"SMEMBERS", prefix_ + "dead:" + host});
  auto [ec, replies] =
      co_await reader_->async_exec(std::move(commands), asio::as_tuple(asio::use_awaitable));
  RouteLookup result;
  if (ec || replies.size() != candidates.size() + 1) {
    result.status = RouteLookup::Status::unavailable;
    co_return result;
  }
  // An error reply (NOAUTH, WRONGTYPE on a malformed key, ...) means that part of the routing
  // table could not be read: a store failure (503) for this host, never "no such frontend".
  // Candidates after the one that matched do not matter.
  const auto unreadable = [&](const RedisReply& reply) {
    if (reply.kind != RedisReply::Kind::error) return false;
    report_error_reply(host, reply.text);
    result.status = RouteLookup::Status::unavailable;
    return true;
  };
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    const auto& reply = replies[i];
    if (unreadable(reply)) co_return result;
    if (reply.kind != RedisReply::Kind::array || reply.elements.empty()) continue;
    if (unreadable(replies.back())) co_return result;
    result.status = RouteLookup::Status::found;
    auto shared_route = std::make_shared<Route>();
    auto& route = *shared_route;
    result.route = shared_route;
    route.frontend_key = candidates[i];
    route.identifier = reply.elements.front().text;
    for (std::size_t b = 1; b < reply.elements.size(); ++b) {
      route.backends.push_back(parse_backend_url(reply.elements[b].text));
    }
    for (const auto& member : replies.back().elements) {
      const auto index = member.text_as_integer();
      if (index && *index >= 0 && static_cast<std::size_t>(*index) < route.backends.size()) {
        route.backends[static_cast<std::size_t>(*index)].dead = true;
      }
    }
    break;
  }
  co_return result;
}

// Whether an invalidation sits unread on the subscriber socket (the write was just acknowledged
// to its author, who may already be sending the request that must see it). Asked once per batch
// of ready events rather than once per request: the answer is kept until a posted reset runs,
// which the event loop does before it handles the next batch. A request whose readiness this
// batch reports was sent before the check, so an invalidation its author waited for was already
// on the socket then. (Bytes that arrive later in the batch and are read at once, pipelined
// behind others, can miss one by the rest of the batch: well inside the ~1 ms the issue allows.)
bool RedisRouteSource::invalidation_pending() {
  if (!tracking_active_) return false;
  if (!pending_checked_) {
    pending_ = subscriber_->has_unread_input();
    pending_checked_ = true;
    asio::post(executor_, [weak = weak_from_this()] {
      if (auto self = weak.lock()) self->pending_checked_ = false;
    });
  }
  return pending_;
}

// Invalidation link lost (subscriber or reader connection): the cache may trust nothing.
void RedisRouteSource::link_lost() {
  ++link_epoch_;
  tracking_active_ = false;
  if (sink_ != nullptr) sink_->link_lost();
}

void RedisRouteSource::subscribe() {
  std::vector<RedisCommand> commands{{"CLIENT", "ID"}, {"SUBSCRIBE", kInvalidationChannel}};
  std::weak_ptr<RedisRouteSource> weak = shared_from_this();
  subscriber_->async_exec(std::move(commands),
                          [weak](boost::system::error_code ec, RedisReplies replies) {
                            auto self = weak.lock();
                            if (!self || ec || replies.size() != 2) return;
                            if (replies[0].kind != RedisReply::Kind::integer) {
                              self->tracking_unsupported("CLIENT ID: " + replies[0].text);
                              return;
                            }
                            self->subscriber_id_ = std::to_string(replies[0].integer);
                            self->enable_tracking();
                          });
}

void RedisRouteSource::enable_tracking() {
  if (!subscriber_ || unsupported_ || subscriber_id_.empty() || !reader_->connected()) return;
  // REDIRECT names a client of the same server: after a failover both must be on the new master
  // (the one still on the old server reconnects and calls this again).
  if (!(reader_->server() == subscriber_->server()) || replica_link_down_) return;
  // off first: re-enabling with a new REDIRECT target is refused while tracking is on.
  std::vector<RedisCommand> commands{
      {"CLIENT", "TRACKING", "off"},
      {"CLIENT", "TRACKING", "on", "REDIRECT", subscriber_id_, "BCAST", "PREFIX",
       prefix_ + "frontend:", "PREFIX", prefix_ + "dead:"}};
  std::weak_ptr<RedisRouteSource> weak = shared_from_this();
  const auto epoch = link_epoch_;
  const auto redirect = subscriber_id_;
  reader_->async_exec(std::move(commands),
                      [weak, epoch, redirect](boost::system::error_code ec, RedisReplies replies) {
                        auto self = weak.lock();
                        if (!self || ec || replies.size() != 2) return;
                        if (replies[1].kind == RedisReply::Kind::error) {
                          // A stale REDIRECT (the subscriber reconnected meanwhile) is retried by
                          // its own hook.
                          if (redirect == self->subscriber_id_ &&
                              self->reader_->server() == self->subscriber_->server()) {
                            self->tracking_unsupported("CLIENT TRACKING: " + replies[1].text);
                          }
                          return;
                        }
                        if (epoch != self->link_epoch_ || self->replica_link_down_)
                          return;  // a connection dropped (or came up) meanwhile
                        ++self->link_epoch_;
                        self->tracking_active_ = true;
                        if (self->sink_ != nullptr) self->sink_->link_up();
                      });
}

void RedisRouteSource::tracking_unsupported(const std::string& why) {
  if (unsupported_) return;
  unsupported_ = true;
  spdlog::warn("route cache off, Redis is read on every request: {}", why);
  subscriber_->stop();
}

// ["message", "__redis__:invalidate", keys] where keys is an array, or nil for FLUSHALL.
void RedisRouteSource::on_message(const RedisReply& message) {
  if (sink_ == nullptr || message.elements.size() < 3) return;
  const auto& payload = message.elements[2];
  if (payload.kind != RedisReply::Kind::array) {
    sink_->invalidated_all();
    return;
  }
  constexpr std::string_view kFrontend = "frontend:";
  constexpr std::string_view kDead = "dead:";
  for (const auto& key : payload.elements) {
    std::string_view name = key.text;
    if (name.substr(0, prefix_.size()) != prefix_) continue;
    name.remove_prefix(prefix_.size());
    if (name.substr(0, kFrontend.size()) == kFrontend) {
      sink_->invalidated(InvalidationSink::Key::frontend, name.substr(kFrontend.size()));
    } else if (name.substr(0, kDead.size()) == kDead) {
      sink_->invalidated(InvalidationSink::Key::dead, name.substr(kDead.size()));
    }
  }
}

// At most one log line per kErrorLogInterval: a broken key must not flood the log.
void RedisRouteSource::report_error_reply(const std::string& host, const std::string& error) {
  const auto now = std::chrono::steady_clock::now();
  if (now < next_error_log_) return;
  next_error_log_ = now + kErrorLogInterval;
  spdlog::error("redis error reading the route of {}: {}", host, error);
}

// A subscriber sends nothing by itself, so a link dropped silently (NAT, firewall) would go
// unnoticed while the cache trusts it. A PING every few seconds is answered even in subscribed
// mode; the connection's reply watchdog resets the link when the answer does not come.
asio::awaitable<void> RedisRouteSource::heartbeat(std::shared_ptr<RedisRouteSource> self) {
  asio::steady_timer timer(self->executor_);
  while (!self->stopped_) {
    timer.expires_after(kHeartbeatInterval);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (self->stopped_ || self->unsupported_ || !self->subscriber_->connected()) continue;
    co_await self->subscriber_->async_exec(ping_command(), asio::as_tuple(asio::use_awaitable));
  }
}

// Polled on the read connection while its server is a replica (ROLE in the handshake). While the
// link is down the replica's data may be stale and master writes send no invalidations: the cache
// treats it as a lost link (nothing cached answers as fresh, reads are not kept as fresh) until
// the link is back, when tracking is set up again and everything is read afresh.
asio::awaitable<void> RedisRouteSource::watch_replica_link(std::shared_ptr<RedisRouteSource> self) {
  asio::steady_timer timer(self->executor_);
  while (!self->stopped_) {
    timer.expires_after(kReplicaLinkPollInterval);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (self->stopped_ || !self->reader_->connected()) continue;
    if (!self->reader_->is_replica()) {
      if (self->replica_link_down_) self->replica_link_changed(false);  // promoted
      continue;
    }
    std::vector<RedisCommand> info{{"INFO", "replication"}};
    auto [ec, replies] =
        co_await self->reader_->async_exec(std::move(info), asio::as_tuple(asio::use_awaitable));
    if (ec || replies.size() != 1 || replies[0].kind != RedisReply::Kind::string) continue;
    const bool down = master_link_down(replies[0]);
    if (down != self->replica_link_down_) self->replica_link_changed(down);
  }
}

void RedisRouteSource::replica_link_changed(bool down) {
  replica_link_down_ = down;
  const auto& server = reader_->server();
  if (down) {
    spdlog::error(
        "redis (read) {}:{}: the replica's link to its master is down; its routes may be stale "
        "and are not cached until it is back",
        server.host, server.port);
    link_lost();
    return;
  }
  spdlog::info("redis (read) {}:{}: the replica's link to its master is up again", server.host,
               server.port);
  enable_tracking();
}

}  // namespace hipache::store
