// The byte stream under a Redis connection: TCP, or TLS over TCP for rediss:// URLs. Reads are
// a wait for readability then non-blocking reads (see RedisConnection::run_connection for why),
// so TLS reads are drained until the socket would block: OpenSSL may hold decrypted bytes that
// no readiness event announces.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "hipache/config.hpp"

namespace hipache::store {

namespace asio = boost::asio;

// The client context for a rediss:// URL: peer verification against `ca` (or the system's store),
// an optional client certificate. Returns nullptr and sets `error` when a file cannot be used.
std::shared_ptr<asio::ssl::context> make_redis_tls_context(const RedisTlsOptions& options,
                                                           std::string& error);

class RedisTransport {
 public:
  // `tls` null: plain TCP. `server_name` overrides the host for SNI and verification.
  RedisTransport(asio::any_io_executor executor, std::shared_ptr<asio::ssl::context> tls,
                 std::string server_name);
  RedisTransport(const RedisTransport&) = delete;
  RedisTransport& operator=(const RedisTransport&) = delete;

  // Resolves, connects and (TLS) handshakes, all within `timeout`. Empty string = success,
  // otherwise why it failed.
  asio::awaitable<std::string> open(const RedisAddress& address, std::chrono::milliseconds timeout);
  asio::awaitable<void> wait_readable(boost::system::error_code& ec);
  // Non-blocking: asio::error::would_block when nothing more can be read now.
  std::size_t read_some(asio::mutable_buffer buffer, boost::system::error_code& ec);
  asio::awaitable<void> write(std::string_view bytes, boost::system::error_code& ec);
  bool has_unread_input() const;
  void close();

 private:
  asio::any_io_executor executor_;
  std::shared_ptr<asio::ssl::context> context_;
  std::string server_name_;
  asio::ip::tcp::socket socket_;
  mutable std::optional<asio::ssl::stream<asio::ip::tcp::socket&>> tls_;  // mutable: SSL_pending
  // TLS: the last read stopped because the socket would block. Until then ciphertext already
  // taken from the socket may wait inside the stream, and no readiness event announces it.
  bool drained_ = false;
};

}  // namespace hipache::store
