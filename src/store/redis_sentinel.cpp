#include "store/redis_sentinel.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <charconv>

#include "store/redis_transport.hpp"

namespace hipache::store {

namespace {

using boost::system::error_code;
constexpr const char* kSwitchMasterChannel = "+switch-master";

std::optional<std::uint16_t> parse_port(std::string_view text) {
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value == 0 || value > 65535) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(value);
}

std::string sentinel_command(const std::string& master_name) {
  return "*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$" +
         std::to_string(master_name.size()) + "\r\n" + master_name + "\r\n";
}

// One question to one sentinel over a fresh connection: the reply, or why there is none.
asio::awaitable<std::optional<RedisReply>> ask_one(
    asio::any_io_executor executor, const RedisAddress& sentinel, const RedisEndpoint& endpoint,
    std::shared_ptr<asio::ssl::context> tls, std::chrono::milliseconds timeout, std::string& why) {
  using namespace asio::experimental::awaitable_operators;
  RedisTransport transport(executor, std::move(tls), endpoint.tls.server_name);
  why = co_await transport.open(sentinel, timeout);
  if (!why.empty()) co_return std::nullopt;
  error_code ec;
  asio::steady_timer deadline(executor, timeout);
  std::string request = sentinel_command(endpoint.master_name);
  auto written =
      co_await (transport.write(request, ec) || deadline.async_wait(asio::use_awaitable));
  if (written.index() == 1 || ec) {
    why = written.index() == 1 ? "no reply in time" : ec.message();
    co_return std::nullopt;
  }
  std::string received;
  std::array<char, 4096> buffer{};
  while (received.size() < 65536) {
    auto ready = co_await (transport.wait_readable(ec) || deadline.async_wait(asio::use_awaitable));
    if (ready.index() == 1) {
      why = "no reply in time";
      co_return std::nullopt;
    }
    std::size_t n = 0;
    if (!ec) n = transport.read_some(asio::buffer(buffer), ec);
    if (ec == asio::error::would_block) continue;
    if (!ec && n == 0) ec = asio::error::eof;
    if (ec) {
      why = ec == asio::error::eof ? "connection closed by the sentinel" : ec.message();
      co_return std::nullopt;
    }
    received.append(buffer.data(), n);
    RedisReplies replies;
    if (!decode_replies(received, replies)) {
      why = "protocol error";
      co_return std::nullopt;
    }
    if (!replies.empty()) co_return std::move(replies.front());
  }
  why = "reply too long";
  co_return std::nullopt;
}

}  // namespace

asio::awaitable<std::optional<RedisAddress>> ask_sentinels(asio::any_io_executor executor,
                                                           const RedisEndpoint& endpoint,
                                                           std::shared_ptr<asio::ssl::context> tls,
                                                           std::chrono::milliseconds timeout,
                                                           std::string& why) {
  std::string answers;
  for (const auto& sentinel : endpoint.sentinels) {
    std::string failure;
    auto reply = co_await ask_one(executor, sentinel, endpoint, tls, timeout, failure);
    if (reply && reply->kind == RedisReply::Kind::array && reply->elements.size() == 2) {
      if (auto port = parse_port(reply->elements[1].text)) {
        co_return RedisAddress{reply->elements[0].text, *port};
      }
      failure = "unreadable address";
    } else if (reply) {
      failure = reply->kind == RedisReply::Kind::error ? reply->text : "does not know the master";
    }
    if (!answers.empty()) answers += "; ";
    answers += sentinel.host + ":" + std::to_string(sentinel.port) + ": " + failure;
  }
  why = "no sentinel named master \"" + endpoint.master_name + "\" (" + answers + ")";
  co_return std::nullopt;
}

std::optional<RedisAddress> parse_switch_master(std::string_view payload,
                                                std::string_view master_name) {
  std::vector<std::string_view> words;
  while (!payload.empty()) {
    const std::size_t space = payload.find(' ');
    words.push_back(payload.substr(0, space));
    if (space == std::string_view::npos) break;
    payload.remove_prefix(space + 1);
  }
  if (words.size() != 5 || words[0] != master_name) return std::nullopt;
  const auto port = parse_port(words[4]);
  if (!port) return std::nullopt;
  return RedisAddress{std::string(words[3]), *port};
}

SentinelWatcher::SentinelWatcher(asio::any_io_executor executor, const RedisEndpoint& endpoint,
                                 std::chrono::milliseconds timeout,
                                 std::vector<std::shared_ptr<RedisConnection>> followers)
    : endpoint_(endpoint), followers_(std::move(followers)) {
  // The sentinel itself: no user, password or database of the data servers; TLS as theirs.
  RedisEndpoint sentinel;
  sentinel.host = endpoint.sentinels.front().host;
  sentinel.port = endpoint.sentinels.front().port;
  sentinel.tls = endpoint.tls;
  connection_ = std::make_shared<RedisConnection>(executor, sentinel, "sentinel", timeout);
}

void SentinelWatcher::start() {
  std::weak_ptr<SentinelWatcher> weak = shared_from_this();
  connection_->set_keep_connected(true);
  connection_->set_on_connected([weak] {
    if (auto self = weak.lock()) self->subscribe();
  });
  // A sentinel that went away: the next one is tried after the back-off.
  connection_->set_on_disconnected([weak] {
    auto self = weak.lock();
    if (!self) return;
    self->current_ = (self->current_ + 1) % self->endpoint_.sentinels.size();
    self->connection_->retarget(self->endpoint_.sentinels[self->current_]);
  });
  connection_->set_push_handler([weak](RedisReply message) {
    auto self = weak.lock();
    if (!self || message.elements.size() < 3) return;
    if (auto master = parse_switch_master(message.elements[2].text, self->endpoint_.master_name)) {
      self->follow(*master, "the sentinels switched the master");
    }
  });
  connection_->start();
}

void SentinelWatcher::stop() {
  connection_->stop();
}

// The master is asked for before subscribing (a subscribed connection takes no other command):
// a switch that happened while no sentinel was watched is caught up with here.
void SentinelWatcher::subscribe() {
  std::vector<RedisCommand> commands{{"SENTINEL", "get-master-addr-by-name", endpoint_.master_name},
                                     {"SUBSCRIBE", kSwitchMasterChannel}};
  std::weak_ptr<SentinelWatcher> weak = shared_from_this();
  connection_->async_exec(std::move(commands), [weak](error_code ec, RedisReplies replies) {
    auto self = weak.lock();
    if (!self || ec || replies.empty()) return;
    const auto& master = replies.front();
    if (master.kind != RedisReply::Kind::array || master.elements.size() != 2) return;
    if (auto port = parse_port(master.elements[1].text)) {
      self->follow({master.elements[0].text, *port}, "a sentinel names another master");
    }
  });
}

// Connections on another server (or waiting out a back-off) go to the master now. One being
// opened is left alone: it asks the sentinels itself and checks ROLE once connected.
void SentinelWatcher::follow(const RedisAddress& master, const char* why) {
  bool logged = false;
  for (const auto& follower : followers_) {
    if (follower->connecting()) continue;
    if (follower->connected() && follower->server() == master) continue;
    if (!logged) {
      spdlog::info("redis sentinel: {}: master \"{}\" is now {}:{}; reconnecting", why,
                   endpoint_.master_name, master.host, master.port);
      logged = true;
    }
    follower->reconnect_now();
  }
}

}  // namespace hipache::store
