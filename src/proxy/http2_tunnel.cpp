// The RFC 8441 tunnel of one HTTP/2 stream: two directions and an idle watch, joined in run().
#include "proxy/http2_tunnel.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cassert>

#include "metrics/record.hpp"
#include "proxy/http2_connection.hpp"
#include "proxy/http2_stream.hpp"
#include "proxy/upstream_pool.hpp"

namespace hipache::proxy {

namespace {
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
}  // namespace

Http2Tunnel::Http2Tunnel(Http2Stream& stream, UpstreamConnection& upstream, ProxyContext& ctx)
    : stream_(stream),
      upstream_(upstream),
      timeout_(ctx.config.server.tcp_timeout_s),
      chunk_(ctx.tunnel_chunks.take()),
      idle_timer_(stream.connection_.executor()) {
  // The stream's timer is the tunnel's wake-up now: only ever cancelled (by the stream's events
  // and by stop()), so both directions can wait on it at once.
  stream_.progress_.emplace(stream.connection_.executor(), asio::steady_timer::time_point::max());
  stream_.tunnelling_ = true;
  upstream_.stream.tcp().expires_never();
  metrics::add(metrics::Counter::websocket_tunnels);
  metrics::adjust(metrics::Gauge::tunnels_open, 1);
}

Http2Tunnel::~Http2Tunnel() {
  metrics::adjust(metrics::Gauge::tunnels_open, -1);
}

asio::awaitable<void> Http2Tunnel::run() {
  using namespace asio::experimental::awaitable_operators;
  co_await (to_backend() && to_client() && watch_idleness());
}

asio::awaitable<void> Http2Tunnel::wait_for_stream() {
  co_await stream_.progress_->async_wait(kUseTuple);
}

void Http2Tunnel::stop() {
  if (stopped_) return;
  stopped_ = true;
  boost::system::error_code ignored;
  upstream_.stream.socket().close(ignored);  // pending reads and writes end with an error
  stream_.wake();
  idle_timer_.cancel();
}

void Http2Tunnel::direction_done() {
  if (--directions_ == 0) idle_timer_.cancel();
}

// The client's DATA to the backend, each piece's window reopened once the backend took it.
asio::awaitable<void> Http2Tunnel::to_backend() {
  auto& stream = stream_;
  while (!stopped_) {
    if (!stream.inbound_.empty()) {
      stream.forwarding_.swap(stream.inbound_);
      stream.inbound_.clear();
      auto [ec, n] = co_await upstream_.stream.visit([&](auto& backend) {
        return asio::async_write(backend, asio::buffer(stream.forwarding_), kUseTuple);
      });
      // Written or dropped, the bytes leave the connection's window either way.
      stream.consume(stream.forwarding_.size());
      if (ec) break;
      last_activity_ = Clock::now();
      continue;
    }
    if (stream.closed_) break;  // reset by the client (or over after our END_STREAM)
    if (stream.request_ended_) {
      // The client's half is over: the backend's ends too, and its answer can go on.
      boost::system::error_code ignored;
      upstream_.stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
      direction_done();
      co_return;
    }
    co_await wait_for_stream();
  }
  stop();
  direction_done();
}

// The backend's bytes to the client as DATA frames, one chunk at a time; its EOF ends the stream.
asio::awaitable<void> Http2Tunnel::to_client() {
  auto& stream = stream_;
  auto& buffer = upstream_.buffer;
  while (!stopped_) {
    std::size_t n = 0;
    boost::system::error_code ec;
    if (buffer.size() > 0) {
      // Bytes that came with the 101 belong to the tunnel already.
      n = asio::buffer_copy(asio::buffer(*chunk_), buffer.data());
      buffer.consume(n);
    } else {
      std::tie(ec, n) = co_await upstream_.stream.visit(
          [&](auto& backend) { return backend.async_read_some(asio::buffer(*chunk_), kUseTuple); });
    }
    if (stopped_) break;
    const bool eof = ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
    if (ec && !eof) break;
    if (stream.hand_over({(*chunk_).data(), n}, eof) != 0) break;
    while (!stopped_ && !stream.closed_ &&
           (!stream.outbound_.empty() || (eof && !stream.response_complete_))) {
      co_await wait_for_stream();
    }
    if (stopped_ || !stream.outbound_.empty() || (eof && !stream.response_complete_)) break;
    bytes_to_client_ += n;
    last_activity_ = Clock::now();
    if (eof) {
      direction_done();
      co_return;
    }
  }
  stop();
  direction_done();
}

// tcpTimeout without a byte either way ends the tunnel, as for HTTP/1 tunnels.
asio::awaitable<void> Http2Tunnel::watch_idleness() {
  while (directions_ > 0 && !stopped_) {
    const bool watch = timeout_.count() > 0;
    idle_timer_.expires_at(watch ? last_activity_ + timeout_ : Clock::time_point::max());
    co_await idle_timer_.async_wait(kUseTuple);
    if (watch && directions_ > 0 && !stopped_ && Clock::now() >= last_activity_ + timeout_) {
      stop();
    }
  }
}

// The stream's ClientSide::start_tunnel: the tunnel runs here, in the exchange, and its end
// writes the handshake's access-log line with the whole tunnel's bytes and times, status 200 (the
// status the client got; an HTTP/1 tunnel logs its 101).
asio::awaitable<TunnelStart> Http2Stream::start_tunnel(
    std::unique_ptr<UpstreamConnection>& upstream, log::AccessLogEntry entry,
    std::chrono::steady_clock::time_point started,
    std::chrono::steady_clock::time_point backend_started) {
  assert(websocket_ && header_submitted_);
  auto& ctx = connection_.context();
  ctx.pool.forget(*upstream);  // a long-lived tunnel does not hold one of maxSockets
  TunnelStart result;
  {
    Http2Tunnel tunnel(*this, *upstream, ctx);
    co_await tunnel.run();
    result.to_client = tunnel.bytes_to_client();
  }
  upstream.reset();  // the backend sees the close now, not when the exchange ends

  const auto now = std::chrono::steady_clock::now();
  metrics::request_done(200, now - started, now - backend_started, {});
  if (ctx.access_log.enabled()) {
    entry.status = 200;
    entry.bytes_sent += result.to_client;
    entry.total = std::chrono::duration_cast<std::chrono::milliseconds>(now - started);
    entry.backend = std::chrono::duration_cast<std::chrono::milliseconds>(now - backend_started);
    entry.when = std::chrono::system_clock::now();
    ctx.access_log.write(entry);
  }
  co_return result;
}

}  // namespace hipache::proxy
