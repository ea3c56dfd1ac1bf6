#include "store/redis_connection.hpp"

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/container/small_vector.hpp>
#include <charconv>
#include <new>

#include "metrics/record.hpp"
#include "store/redis_sentinel.hpp"
#include "store/redis_transport.hpp"

namespace hipache::store {

namespace {

using namespace std::chrono_literals;
using boost::system::error_code;
constexpr auto kConnectTimeout = 1s;
constexpr auto kMaxBackoff = std::chrono::milliseconds(5000);
constexpr auto kInitialBackoff = std::chrono::milliseconds(100);

RedisReply convert(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_STATUS:
      out.kind = RedisReply::Kind::status;
      out.text.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.kind = RedisReply::Kind::error;
      out.text.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.kind = RedisReply::Kind::integer;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_STRING:
      out.kind = RedisReply::Kind::string;
      out.text.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ARRAY:
      out.kind = RedisReply::Kind::array;
      out.elements.reserve(r->elements);
      for (std::size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
      break;
    default:
      out.kind = RedisReply::Kind::nil;
  }
  return out;
}

// hiredis 0.14 allocates an array's element table as soon as it reads "*<n>\r\n", before any
// element arrives: a corrupt or hostile "*1000000000" would ask for 8 GB. No reply we read (a
// frontend list, a dead set) comes near this bound; past it the reader reports an error and the
// connection is dropped like any other protocol error.
constexpr int kMaxReplyElements = 1 << 20;
void* (*default_create_array)(const redisReadTask*, int) = nullptr;

redisReplyObjectFunctions* bounded_reply_functions() {
  static redisReplyObjectFunctions functions = [] {
    const std::unique_ptr<redisReader, void (*)(redisReader*)> probe(redisReaderCreate(),
                                                                     &redisReaderFree);
    redisReplyObjectFunctions bounded = *probe->fn;
    default_create_array = bounded.createArray;
    bounded.createArray = [](const redisReadTask* task, int elements) -> void* {
      if (elements > kMaxReplyElements) return nullptr;
      return default_create_array(task, elements);
    };
    return bounded;
  }();
  return &functions;
}

redisReader* new_reader() {
  return redisReaderCreateWithFunctions(bounded_reply_functions());
}

// A pub/sub delivery: ["message", channel, payload]. Replies to SUBSCRIBE itself are
// ["subscribe", ...] and stay command replies.
bool is_pubsub_message(const redisReply* r) {
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) return false;
  const redisReply* kind = r->element[0];
  return kind->type == REDIS_REPLY_STRING && std::string_view(kind->str, kind->len) == "message";
}

}  // namespace

std::optional<long long> RedisReply::text_as_integer() const {
  long long value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

bool decode_replies(std::string_view input, RedisReplies& out) {
  std::unique_ptr<redisReader, void (*)(redisReader*)> reader(new_reader(), &redisReaderFree);
  if (redisReaderFeed(reader.get(), input.data(), input.size()) != REDIS_OK) return false;
  for (;;) {
    void* raw = nullptr;
    if (redisReaderGetReply(reader.get(), &raw) != REDIS_OK) return false;
    if (raw == nullptr) return true;
    std::unique_ptr<redisReply, void (*)(void*)> reply(static_cast<redisReply*>(raw),
                                                       &freeReplyObject);
    out.push_back(convert(reply.get()));
  }
}

RedisConnection::RedisConnection(asio::any_io_executor executor, RedisEndpoint endpoint,
                                 std::string name, std::chrono::milliseconds reply_timeout)
    : executor_(executor),
      endpoint_(std::move(endpoint)),
      name_(std::move(name)),
      reply_timeout_(reply_timeout),
      server_{endpoint_.host, endpoint_.port},
      write_signal_(executor),
      reader_(new_reader(), &redisReaderFree),
      reconnect_timer_(executor) {
  if (endpoint_.tls.enabled) tls_context_ = make_redis_tls_context(endpoint_.tls, tls_error_);
}

void RedisConnection::start() {
  if (state_ == State::idle) connect();
}

void RedisConnection::stop() {
  fail(generation_, "");
  state_ = State::stopped;
  reconnect_timer_.cancel();
}

bool RedisConnection::has_unread_input() const {
  return state_ == State::connected && transport_ && transport_->has_unread_input();
}

void RedisConnection::reconnect_now() {
  if (state_ == State::stopped) return;
  if (state_ == State::connected || state_ == State::connecting) fail(generation_, "");
  backoff_ = kInitialBackoff;
  reconnect_timer_.cancel();
  connect();
}

void RedisConnection::retarget(const RedisAddress& address) {
  endpoint_.host = address.host;
  endpoint_.port = address.port;
}

std::string RedisConnection::where() const {
  const std::string address = server_.host + ":" + std::to_string(server_.port);
  if (endpoint_.sentinels.empty()) return address;
  return "master \"" + endpoint_.master_name + "\"" + (server_.host.empty() ? "" : " " + address);
}

void RedisConnection::submit(std::vector<RedisCommand> commands, Handler handler) {
  const auto now = std::chrono::steady_clock::now();
  if (state_ == State::idle || (state_ == State::backing_off && now >= retry_at_)) connect();
  if (state_ == State::stopped || state_ == State::backing_off || commands.empty()) {
    Pending failed{commands.size(), {}, std::move(handler), now};
    complete(failed, asio::error::not_connected);
    return;
  }
  for (const auto& command : commands) append_command(command);
  pending_.push_back(Pending{commands.size(), {}, std::move(handler), now});
  if (state_ == State::connected) write_signal_.cancel();
}

void RedisConnection::append_command(const RedisCommand& command) {
  // hiredis's own RESP encoder (multi-bulk: binary safe); it allocates the encoded command.
  boost::container::small_vector<const char*, 16> argv;
  boost::container::small_vector<std::size_t, 16> lengths;
  for (const auto& arg : command) {
    argv.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  char* encoded = nullptr;
  const auto length =
      redisFormatCommandArgv(&encoded, static_cast<int>(argv.size()), argv.data(), lengths.data());
  const std::unique_ptr<char, void (*)(char*)> owner(encoded, &redisFreeCommand);
  if (length < 0) throw std::bad_alloc();  // hiredis fails only to allocate
  outbox_.append(encoded, static_cast<std::size_t>(length));
}

void RedisConnection::queue_handshake(RedisCommand command, Handshake step) {
  append_command(command);
  pending_.push_back(Pending{1, {}, Handler(), std::chrono::steady_clock::now(), step});
}

void RedisConnection::connect() {
  ++generation_;
  state_ = State::connecting;
  outbox_.clear();
  reader_.reset(new_reader());
  if (transport_) transport_->close();
  transport_.reset();
  replica_ = false;
  // The handshake goes first in the pipeline; its replies are checked by check_handshake().
  if (!endpoint_.user.empty()) {
    queue_handshake({"AUTH", endpoint_.user, endpoint_.password}, Handshake::auth);
  } else if (!endpoint_.password.empty()) {
    queue_handshake({"AUTH", endpoint_.password}, Handshake::auth);
  }
  if (endpoint_.database != 0) {
    queue_handshake({"SELECT", std::to_string(endpoint_.database)}, Handshake::select);
  }
  queue_handshake({"ROLE"}, Handshake::role);
  asio::co_spawn(executor_, run_connection(generation_), asio::detached);
}

asio::awaitable<void> RedisConnection::run_connection(std::uint64_t generation) {
  auto self = shared_from_this();
  if (endpoint_.tls.enabled && !tls_context_) {
    fail(generation, "TLS setup: " + tls_error_);
    co_return;
  }
  const auto timeout = std::min<std::chrono::milliseconds>(kConnectTimeout, reply_timeout_);
  if (!endpoint_.sentinels.empty()) {
    std::string why;
    auto master = co_await ask_sentinels(executor_, endpoint_, tls_context_, timeout, why);
    if (generation != generation_) co_return;
    if (!master) {
      fail(generation, why);
      co_return;
    }
    server_ = std::move(*master);
  } else {
    server_ = {endpoint_.host, endpoint_.port};
  }
  auto transport =
      std::make_shared<RedisTransport>(executor_, tls_context_, endpoint_.tls.server_name);
  transport_ = transport;
  const std::string error = co_await transport->open(server_, timeout);
  if (generation != generation_) co_return;
  if (!error.empty()) {
    fail(generation, error);
    co_return;
  }
  state_ = State::connected;
  if (was_connected_) metrics::add(metrics::Counter::redis_reconnects);
  was_connected_ = true;
  asio::co_spawn(executor_, write_loop(generation, transport), asio::detached);
  asio::co_spawn(executor_, watchdog(generation), asio::detached);
  if (on_connected_) on_connected_();
  co_await read_loop(generation, std::move(transport));
}

// A wait for readability, then reads until the socket would block, rather than a pending read:
// the reactor performs a pending read as soon as bytes arrive and queues its completion, and
// until that runs the bytes are neither on the socket (has_unread_input() would say none) nor
// handled. An invalidation must never be in that gap while a request checks for one.
asio::awaitable<void> RedisConnection::read_loop(std::uint64_t generation,
                                                 std::shared_ptr<RedisTransport> transport) {
  std::array<char, 16384> buffer{};
  error_code ec;
  while (generation == generation_) {
    co_await transport->wait_readable(ec);
    if (generation != generation_) co_return;
    std::size_t n = 0;
    if (!ec) n = transport->read_some(asio::buffer(buffer), ec);
    if (ec == asio::error::would_block) continue;
    if (!ec && n == 0) ec = asio::error::eof;
    if (ec) {
      fail(generation, ec == asio::error::eof ? "connection closed by server" : ec.message());
      co_return;
    }
    if (redisReaderFeed(reader_.get(), buffer.data(), n) != REDIS_OK) {
      fail(generation, "protocol error");
      co_return;
    }
    for (;;) {
      void* raw = nullptr;
      if (redisReaderGetReply(reader_.get(), &raw) != REDIS_OK) {
        fail(generation, "protocol error");
        co_return;
      }
      if (raw == nullptr) break;
      std::unique_ptr<redisReply, void (*)(void*)> reply(static_cast<redisReply*>(raw),
                                                         &freeReplyObject);
      if (on_push_ && is_pubsub_message(reply.get())) {
        on_push_(convert(reply.get()));
        if (generation != generation_) co_return;
        continue;
      }
      if (pending_.empty()) {
        fail(generation, "unexpected reply");
        co_return;
      }
      RedisReply converted = convert(reply.get());
      if (server_refuses(generation, converted)) co_return;
      auto& front = pending_.front();
      front.replies.push_back(std::move(converted));
      if (front.replies.size() == front.expected) {
        Pending done = std::move(front);
        pending_.pop_front();
        complete(done, {});
        if (generation != generation_) co_return;  // a failed handshake reset the connection
      }
      if (logged_down_) {
        // Only a reply proves recovery: a server that accepts and then hangs (or refuses our
        // AUTH) is still down.
        spdlog::info("redis ({}) {}: answering again", name_, where());
        logged_down_ = false;
      }
      backoff_ = kInitialBackoff;
    }
  }
}

// Errors that say this server cannot serve us now, whatever the command: one still loading its
// data set (retried after the back-off), and, in sentinel mode, a master demoted to a replica
// (the sentinels are asked again). Returns true when the connection was dropped.
bool RedisConnection::server_refuses(std::uint64_t generation, const RedisReply& reply) {
  if (reply.kind != RedisReply::Kind::error) return false;
  const std::string_view text = reply.text;
  if (text.starts_with("LOADING")) {
    fail(generation, "server is loading its data set: " + reply.text);
    return true;
  }
  if (text.starts_with("READONLY") && !endpoint_.sentinels.empty()) {
    fail(generation, "server is read-only (a demoted master); asking the sentinels again");
    return true;
  }
  return false;
}

asio::awaitable<void> RedisConnection::write_loop(std::uint64_t generation,
                                                  std::shared_ptr<RedisTransport> transport) {
  auto self = shared_from_this();
  std::string writing;
  error_code ec;
  while (generation == generation_ && state_ == State::connected) {
    if (outbox_.empty()) {
      write_signal_.expires_at(asio::steady_timer::time_point::max());
      co_await write_signal_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    writing.clear();
    writing.swap(outbox_);
    co_await transport->write(writing, ec);
    if (ec && generation == generation_) {
      fail(generation, ec.message());
      co_return;
    }
  }
}

asio::awaitable<void> RedisConnection::watchdog(std::uint64_t generation) {
  auto self = shared_from_this();
  asio::steady_timer tick(executor_);
  error_code ec;
  while (generation == generation_ && state_ == State::connected) {
    tick.expires_after(std::max(reply_timeout_ / 4, std::chrono::milliseconds(5)));
    co_await tick.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (generation != generation_) co_return;
    if (!pending_.empty() &&
        std::chrono::steady_clock::now() - pending_.front().sent_at > reply_timeout_) {
      fail(generation, "no reply within " + std::to_string(reply_timeout_.count()) + " ms");
      co_return;
    }
  }
}

void RedisConnection::fail(std::uint64_t generation, const std::string& why) {
  if (generation != generation_ || state_ == State::stopped) return;
  ++generation_;  // every coroutine of the failed connection stands down
  if (!why.empty() && !logged_down_) {
    // Logged once per outage, not per attempt: a down Redis must not flood the log.
    spdlog::error("redis ({}) {}: {}; retrying with back-off", name_, where(), why);
    logged_down_ = true;
  }
  if (transport_) transport_->close();
  write_signal_.cancel();
  outbox_.clear();
  auto failed = std::move(pending_);
  pending_.clear();
  for (auto& p : failed) complete(p, asio::error::connection_aborted);
  state_ = State::backing_off;
  retry_at_ = std::chrono::steady_clock::now() + backoff_;
  backoff_ = std::min(backoff_ * 2, kMaxBackoff);
  if (keep_connected_) {
    reconnect_timer_.expires_at(retry_at_);
    reconnect_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec && self->state_ == State::backing_off) self->connect();
    });
  }
  if (on_disconnected_) on_disconnected_();
}

void RedisConnection::complete(Pending& pending, error_code ec) {
  if (!pending.handler) {
    if (!ec) check_handshake(pending);
    return;
  }
  asio::post(executor_, [handler = std::move(pending.handler), ec,
                         replies = std::move(pending.replies)]() mutable {
    std::move(handler)(ec, std::move(replies));
  });
}

// AUTH and SELECT must succeed. ROLE tells a replica from a master ("slave" in RESP); a server
// that refuses ROLE (an ACL without it) is taken as a master. In sentinel mode the server must be
// the master: a replica means the sentinels' answer is out of date, so they are asked again.
void RedisConnection::check_handshake(const Pending& pending) {
  if (pending.replies.empty()) return;
  const RedisReply& reply = pending.replies.front();
  if (pending.step != Handshake::role) {
    if (reply.kind == RedisReply::Kind::error) {
      fail(generation_, std::string(pending.step == Handshake::auth ? "AUTH" : "SELECT") +
                            " refused: " + reply.text);
    }
    return;
  }
  replica_ = reply.kind == RedisReply::Kind::array && !reply.elements.empty() &&
             reply.elements.front().text == "slave";
  if (replica_ && !endpoint_.sentinels.empty()) {
    fail(generation_, "the server the sentinels named is a replica; asking them again");
  }
}

}  // namespace hipache::store
