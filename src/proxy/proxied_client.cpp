#include "proxy/proxied_client.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "net/proxy_header_read.hpp"

namespace hipache::proxy {

namespace {

namespace asio = boost::asio;
using boost::system::error_code;
// When headerTimeout and tcpTimeout are both off: the header still has a deadline.
constexpr std::chrono::seconds kFallbackTimeout{10};
constexpr std::chrono::seconds kWarnInterval{60};

std::chrono::seconds header_timeout(const Config& config) {
  if (config.server.header_timeout_s > 0)
    return std::chrono::seconds(config.server.header_timeout_s);
  if (config.server.tcp_timeout_s > 0) return std::chrono::seconds(config.server.tcp_timeout_s);
  return kFallbackTimeout;
}

std::string peer_text(asio::ip::tcp::socket& socket) {
  error_code ec;
  const auto peer = socket.remote_endpoint(ec);
  return ec ? std::string("-") : peer.address().to_string();
}

// Each refused connection is logged at debug level; a warning at most once a minute says how
// many there were (a balancer that does not send the header shows up without debug logs).
void note_refused(asio::ip::tcp::socket& socket, std::string_view error) {
  using Clock = std::chrono::steady_clock;
  static Clock::time_point last_warning{};
  static std::uint64_t refused_since = 0;
  ++refused_since;
  const auto peer = peer_text(socket);
  spdlog::debug("connection from {} closed: no valid PROXY header ({})", peer, error);
  const auto now = Clock::now();
  if (last_warning != Clock::time_point{} && now - last_warning < kWarnInterval) return;
  spdlog::warn(
      "{} connection(s) closed without a valid PROXY header (latest from {}: {}); is "
      "the balancer sending one?",
      refused_since, peer, error);
  last_warning = now;
  refused_since = 0;
}

// Counts as an open connection while its header is read, so that maxConnections and a
// graceful drain (which waits for it) see it.
class HeaderWait final : public DrainableSession {
 public:
  explicit HeaderWait(ProxyContext& ctx) : ctx_(ctx) { ctx_.sessions.insert(this); }
  ~HeaderWait() { ctx_.sessions.erase(this); }
  HeaderWait(const HeaderWait&) = delete;
  HeaderWait& operator=(const HeaderWait&) = delete;
  // Its first request is on its way: not idle.
  void close_if_idle() override {}

 private:
  ProxyContext& ctx_;
};

}  // namespace

asio::awaitable<void> serve_proxied_client(asio::ip::tcp::socket socket, ProxyContext& ctx,
                                           net::ssl::context* tls) {
  net::ProxyHeaderRead header;
  {
    HeaderWait wait(ctx);
    header = co_await net::read_proxy_header(socket, header_timeout(ctx.config));
  }
  if (!header.ok) {
    note_refused(socket, header.error);
    error_code ignored;
    socket.close(ignored);
    co_return;
  }
  co_await serve_client(std::move(socket), ctx, tls, 0, header.client);
}

}  // namespace hipache::proxy
