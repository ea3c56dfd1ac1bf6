// The worker-wide operations on its client connections declared in proxy_context.hpp: the
// answer to a connection beyond maxConnections, the drain, the end of the idle TLS grace.
#include "proxy/proxy_context.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "http/error_response.hpp"
#include "net/stream.hpp"

namespace hipache::proxy {

namespace {
constexpr auto kUseTuple = boost::asio::as_tuple(boost::asio::use_awaitable);
using boost::system::error_code;
}  // namespace

void log_connection_exception(const std::exception_ptr& error) {
  if (!error) return;
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    spdlog::critical("connection aborted by an unexpected exception: {}", e.what());
  }
}

asio::awaitable<void> refuse_client(asio::ip::tcp::socket socket, ProxyContext& ctx, bool tls) {
  net::TcpStream stream(std::move(socket));
  if (!tls) {  // a TLS client could not read a plain answer; it just sees the close
    http::ErrorResponse error;
    error.status = static_cast<unsigned>(classify(Failure::overloaded).status);
    error.body = ctx.error_pages.body(classify(Failure::overloaded).status);
    error.retry_after = true;
    const auto response = http::serialize_error_response(error);
    stream.expires_after(std::chrono::seconds(1));
    co_await asio::async_write(stream, asio::buffer(response), kUseTuple);
  }
  error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
}

void begin_drain(ProxyContext& ctx, ConnectionHandover* handover) {
  ctx.draining = true;
  if (handover != nullptr) {
    ctx.idle.hand_over_to(*handover);
    ctx.keep_idle_tls = true;
  } else {
    ctx.idle.close_all();
  }
  for (auto* session : ctx.sessions) session->close_if_idle();
}

void end_idle_tls_grace(ProxyContext& ctx) {
  if (!ctx.keep_idle_tls) return;
  ctx.keep_idle_tls = false;
  for (auto* session : ctx.sessions) session->close_if_idle();
}

}  // namespace hipache::proxy
