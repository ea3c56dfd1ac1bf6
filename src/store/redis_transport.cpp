#include "store/redis_transport.hpp"

#include <openssl/ssl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace hipache::store {

using boost::system::error_code;

std::shared_ptr<asio::ssl::context> make_redis_tls_context(const RedisTlsOptions& options,
                                                           std::string& error) {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  context->set_options(asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 |
                       asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
  context->set_verify_mode(asio::ssl::verify_peer);
  error_code ec;
  if (options.ca.empty()) {
    context->set_default_verify_paths(ec);
  } else {
    context->load_verify_file(options.ca, ec);
  }
  if (ec) {
    error = "CA \"" + options.ca + "\": " + ec.message();
    return nullptr;
  }
  if (!options.cert.empty()) {
    context->use_certificate_chain_file(options.cert, ec);
    if (ec) {
      error = "certificate \"" + options.cert + "\": " + ec.message();
      return nullptr;
    }
    context->use_private_key_file(options.key, asio::ssl::context::pem, ec);
    if (ec) {
      error = "key \"" + options.key + "\": " + ec.message();
      return nullptr;
    }
  }
  return context;
}

RedisTransport::RedisTransport(asio::any_io_executor executor,
                               std::shared_ptr<asio::ssl::context> tls, std::string server_name)
    : executor_(executor),
      context_(std::move(tls)),
      server_name_(std::move(server_name)),
      socket_(executor) {}

asio::awaitable<std::string> RedisTransport::open(const RedisAddress& address,
                                                  std::chrono::milliseconds timeout) {
  using namespace asio::experimental::awaitable_operators;
  error_code ec;
  asio::steady_timer deadline(executor_, timeout);
  asio::ip::tcp::resolver resolver(executor_);
  auto resolved = co_await (resolver.async_resolve(address.host, std::to_string(address.port),
                                                   asio::redirect_error(asio::use_awaitable, ec)) ||
                            deadline.async_wait(asio::use_awaitable));
  if (resolved.index() == 1) co_return "cannot resolve " + address.host + ": timed out";
  if (ec) co_return "cannot resolve " + address.host + ": " + ec.message();
  auto connected = co_await (asio::async_connect(socket_, std::get<0>(resolved),
                                                 asio::redirect_error(asio::use_awaitable, ec)) ||
                             deadline.async_wait(asio::use_awaitable));
  if (connected.index() == 1) co_return "connect timed out";
  if (ec) co_return ec.message();
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  if (context_) {
    tls_.emplace(socket_, *context_);
    const std::string& name = server_name_.empty() ? address.host : server_name_;
    error_code not_ip;
    asio::ip::make_address(name, not_ip);
    if (not_ip) SSL_set_tlsext_host_name(tls_->native_handle(), name.c_str());
    tls_->set_verify_callback(asio::ssl::host_name_verification(name));
    auto shaken = co_await (tls_->async_handshake(asio::ssl::stream_base::client,
                                                  asio::redirect_error(asio::use_awaitable, ec)) ||
                            deadline.async_wait(asio::use_awaitable));
    if (shaken.index() == 1) co_return "TLS handshake timed out";
    if (ec) co_return "TLS handshake failed: " + ec.message();
  }
  socket_.non_blocking(true, ec);
  if (ec) co_return ec.message();
  co_return std::string();
}

asio::awaitable<void> RedisTransport::wait_readable(error_code& ec) {
  // Bytes already inside the TLS stream are readable without the socket saying so.
  if (tls_ && (!drained_ || SSL_pending(tls_->native_handle()) > 0)) co_return;
  co_await socket_.async_wait(asio::ip::tcp::socket::wait_read,
                              asio::redirect_error(asio::use_awaitable, ec));
}

std::size_t RedisTransport::read_some(asio::mutable_buffer buffer, error_code& ec) {
  if (tls_) {
    const std::size_t n = tls_->read_some(buffer, ec);
    drained_ = ec == asio::error::would_block;
    return n;
  }
  return socket_.read_some(buffer, ec);
}

asio::awaitable<void> RedisTransport::write(std::string_view bytes, error_code& ec) {
  if (tls_) {
    co_await asio::async_write(*tls_, asio::buffer(bytes),
                               asio::redirect_error(asio::use_awaitable, ec));
  } else {
    co_await asio::async_write(socket_, asio::buffer(bytes),
                               asio::redirect_error(asio::use_awaitable, ec));
  }
}

bool RedisTransport::has_unread_input() const {
  if (!socket_.is_open()) return false;
  if (tls_ && (!drained_ || SSL_pending(tls_->native_handle()) > 0)) return true;
  error_code ec;
  return socket_.available(ec) > 0;
}

void RedisTransport::close() {
  error_code ignored;
  socket_.close(ignored);
}

}  // namespace hipache::store
