// One Redis connection on the worker's event loop. Commands are pipelined: each call appends
// to an output buffer and waits for its replies in FIFO order. hiredis is used only for the
// protocol (formatting commands, parsing replies); the socket is Asio's, so nothing blocks.
//
// The connection reconnects by itself with back-off. While it is down (or backing off), calls
// fail at once instead of queueing, so a Redis outage costs clients an error page, not a hang.
// Each connection asks the sentinels for the master first (redis-sentinel:// URLs), runs over TLS
// for rediss://, and learns the server's ROLE in its handshake.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <variant>
#include <vector>

#include "hipache/config.hpp"

struct redisReader;

namespace boost::asio::ssl {
class context;
}

namespace hipache::store {

class RedisTransport;

namespace asio = boost::asio;

// A decoded RESP reply. Errors from the server are `kind == error` with `text` set.
struct RedisReply {
  enum class Kind { nil, status, error, integer, string, array } kind = Kind::nil;
  std::string text;  // status, error or string payload
  long long integer = 0;
  std::vector<RedisReply> elements;

  // `text` read as a whole decimal integer (Redis keeps set members and values as strings).
  std::optional<long long> text_as_integer() const;
};

using RedisCommand = std::vector<std::string>;
using RedisReplies = std::vector<RedisReply>;

// Decodes every complete RESP reply in `input` (the connection's parser, exposed for tests and
// fuzzing). Returns false on a protocol error.
bool decode_replies(std::string_view input, RedisReplies& out);

class RedisConnection : public std::enable_shared_from_this<RedisConnection> {
 public:
  using Handler = asio::any_completion_handler<void(boost::system::error_code, RedisReplies)>;

  // reply_timeout: longest a reply may take before the connection counts as hung and is reset.
  RedisConnection(asio::any_io_executor executor, RedisEndpoint endpoint, std::string name,
                  std::chrono::milliseconds reply_timeout);
  ~RedisConnection() = default;
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Sends the commands back to back and completes with one reply per command, or an error when
  // the connection is down or fails before every reply arrived.
  template <typename Token>
  auto async_exec(std::vector<RedisCommand> commands, Token&& token) {
    return asio::async_initiate<Token, void(boost::system::error_code, RedisReplies)>(
        [this](auto handler, std::vector<RedisCommand> cmds) {
          submit(std::move(cmds), Handler(std::move(handler)));
        },
        token, std::move(commands));
  }

  // Starts the first connection attempt (calls also connect lazily).
  void start();

  // Hooks for the route cache's invalidation link. on_connected runs once a connection is up
  // (before anything else is read from it); on_disconnected when it fails. With a push handler,
  // pub/sub "message" arrays go to it instead of being taken as command replies. With
  // keep_connected, a failed connection is re-opened after its back-off without waiting for a
  // command (a subscriber has none to send).
  void set_on_connected(std::function<void()> hook) { on_connected_ = std::move(hook); }
  void set_on_disconnected(std::function<void()> hook) { on_disconnected_ = std::move(hook); }
  void set_push_handler(std::function<void(RedisReply)> handler) { on_push_ = std::move(handler); }
  void set_keep_connected(bool keep) { keep_connected_ = keep; }
  // Closes the socket and fails everything pending; no reconnection afterwards.
  void stop();

  bool connected() const { return state_ == State::connected; }
  bool connecting() const { return state_ == State::connecting; }

  // Bytes have arrived that the read loop has not taken yet (one FIONREAD, no read).
  bool has_unread_input() const;
  const RedisEndpoint& endpoint() const { return endpoint_; }

  // The server connected to (or last tried): the URL's, or the master the sentinels named.
  const RedisAddress& server() const { return server_; }
  // The server's ROLE said "slave" in this connection's handshake.
  bool is_replica() const { return replica_; }
  // Drops the connection (quietly) and connects again at once, skipping the back-off: the
  // sentinels announced a new master.
  void reconnect_now();
  // Where the next connection goes (a sentinel watcher moves on to the next sentinel).
  void retarget(const RedisAddress& address);

 private:
  enum class State { idle, connecting, connected, backing_off, stopped };
  // Commands of the connection's own handshake, checked by complete().
  enum class Handshake { none, auth, select, role };
  struct Pending {
    std::size_t expected;
    RedisReplies replies;
    Handler handler;
    std::chrono::steady_clock::time_point sent_at;
    Handshake step = Handshake::none;
  };

  void submit(std::vector<RedisCommand> commands, Handler handler);
  void append_command(const RedisCommand& command);
  void connect();
  void queue_handshake(RedisCommand command, Handshake step);
  void check_handshake(const Pending& pending);
  bool server_refuses(std::uint64_t generation, const RedisReply& reply);
  std::string where() const;
  asio::awaitable<void> run_connection(std::uint64_t generation);
  asio::awaitable<void> read_loop(std::uint64_t generation,
                                  std::shared_ptr<RedisTransport> transport);
  asio::awaitable<void> write_loop(std::uint64_t generation,
                                   std::shared_ptr<RedisTransport> transport);
  asio::awaitable<void> watchdog(std::uint64_t generation);
  void fail(std::uint64_t generation, const std::string& why);
  void complete(Pending& pending, boost::system::error_code ec);

  asio::any_io_executor executor_;
  RedisEndpoint endpoint_;
  std::string name_;  // "read"/"write", for logs
  std::chrono::milliseconds reply_timeout_;
  std::shared_ptr<asio::ssl::context> tls_context_;  // rediss://; null when plain or unusable
  std::string tls_error_;                            // why tls_context_ is null for rediss://
  std::shared_ptr<RedisTransport> transport_;        // this connection's socket
  RedisAddress server_;
  bool replica_ = false;
  asio::steady_timer write_signal_;
  State state_ = State::idle;
  std::uint64_t generation_ = 0;  // bumped per connection, so stale coroutines stand down
  std::string outbox_;
  std::deque<Pending> pending_;
  std::unique_ptr<redisReader, void (*)(redisReader*)> reader_;
  std::chrono::milliseconds backoff_{100};
  std::chrono::steady_clock::time_point retry_at_{};
  bool logged_down_ = false;
  bool was_connected_ = false;  // a connection now is a reconnection (metrics)
  bool keep_connected_ = false;
  std::function<void()> on_connected_;
  std::function<void()> on_disconnected_;
  std::function<void(RedisReply)> on_push_;
  asio::steady_timer reconnect_timer_;
};

}  // namespace hipache::store
