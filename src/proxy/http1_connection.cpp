// One HTTP/1 client connection: the TLS handshake, reading each request's header, keep-alive,
// pipelining, the warm wait and the park between requests, the lingering close. Each request is
// an Exchange (proxy/exchange.hpp), which reaches the client through this connection's
// ClientSide side.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cassert>
#include <optional>

#include "hipache/errors.hpp"
#include "http/error_response.hpp"
#include "http/message.hpp"
#include "http/read.hpp"
#include "http/serialize.hpp"
#include "metrics/record.hpp"
#include "net/proxy_header.hpp"
#include "net/stream.hpp"
#include "proxy/backend_errors.hpp"
#include "proxy/client_side.hpp"
#include "proxy/exchange.hpp"
#include "proxy/handover.hpp"
#include "proxy/http2_connection.hpp"
#include "proxy/http2_handoff.hpp"
#include "proxy/proxy_context.hpp"
#include "proxy/relay.hpp"
#include "proxy/tunnel.hpp"
#include "proxy/upstream_pool.hpp"

namespace hipache::proxy {

namespace {

namespace bhttp = beast::http;
using boost::system::error_code;
using http::HeaderMemory;
using http::RequestParser;
using net::set_deadline;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

using http::kHeaderLimit;
// The first read of a kept-alive connection's next request: most request headers fit.
constexpr std::size_t kFirstReadSize = 1024;
// From this many requests on, a connection waits warm for its next one (wait_for_request).
constexpr std::uint64_t kWarmAfterRequests = 2;
// Most a client read buffer may hold: a full header block plus 16 KB (docs/security.md).
constexpr std::size_t kReadBufferLimit = kHeaderLimit + 16 * 1024;
constexpr std::chrono::seconds kLingerTime{2};
constexpr std::size_t kLingerBytes = 256 * 1024;

std::string client_address(const asio::ip::tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  // Hipache listened dual-stack, so IPv4 clients appeared as IPv4-mapped IPv6 addresses.
  if (address.is_v4()) return "::ffff:" + address.to_string();
  return address.to_string();
}

class Http1Connection final : public DrainableSession,
                              public IdleConnections::Waiter,
                              public ClientSide {
 public:
  Http1Connection(asio::ip::tcp::socket socket, ProxyContext& ctx, net::ssl::context* tls,
                  std::uint64_t requests_before, std::optional<net::ProxiedAddress> proxied)
      : client_(tls ? net::AnyStream(net::TcpStream(std::move(socket)), *tls)
                    : net::AnyStream(net::TcpStream(std::move(socket)))),
        ctx_(ctx),
        timeout_(ctx_.config.server.tcp_timeout_s),
        requests_before_park_(requests_before),
        proxied_(proxied) {
    ctx_.sessions.insert(this);
    // Asked again after a park rather than kept there: a parked connection stays small. A PROXY
    // header's address cannot be asked again: it is parked (and handed over) with the socket.
    error_code ec;
    const auto remote = client_.socket().remote_endpoint(ec);
    info_.remote = proxied_ ? net::client_text(*proxied_)
                   : ec     ? std::string("-")
                            : client_address(remote);
    const auto local = client_.socket().local_endpoint(ec);
    info_.local_port = ec ? std::string() : std::to_string(local.port());
    info_.tls = client_.is_tls();
    if (requests_before == 0) client_.socket().set_option(asio::ip::tcp::no_delay(true), ec);
  }

  ~Http1Connection() { ctx_.sessions.erase(this); }
  Http1Connection(const Http1Connection&) = delete;
  Http1Connection& operator=(const Http1Connection&) = delete;

  // Between requests of a kept-alive connection there is nothing to lose by closing. A new
  // connection is not idle: its first request is on its way.
  void close_if_idle() override {
    if (waiting_for_next_request_ && !(client_.is_tls() && ctx_.keep_idle_tls)) {
      client_.tcp().cancel();
    }
  }

  // The warm period is over: the read waiting for the next request ends, and the session parks.
  void stop_waiting() override {
    warm_period_over_ = true;
    error_code ignored;
    client_.socket().cancel(ignored);
  }

  // Serves the connection as HTTP/1; returns it instead when the client speaks HTTP/2.
  asio::awaitable<std::optional<Http2Start>> run() {
    if (auto* tls = client_.tls()) {
      set_deadline(client_, handshake_timeout());
      auto [ec] = co_await tls->async_handshake(net::ssl::stream_base::server, kUseTuple);
      if (ec) {
        metrics::add(metrics::Counter::tls_handshake_failures);
        spdlog::debug("TLS handshake with {} failed: {}", info_.remote, ec.message());
        client_.tcp().close();
        co_return std::nullopt;
      }
      metrics::add(metrics::Counter::tls_handshakes);
      if (chose_h2(*tls)) co_return hand_to_http2();
    } else if (requests_before_park_ == 0 && ctx_.config.server.http2) {
      const auto preface = co_await read_http2_preface(client_, buffer_, header_timeout());
      if (preface == PrefaceRead::http2) co_return hand_to_http2();
      if (preface == PrefaceRead::cut_short) {
        client_.tcp().close();
        co_return std::nullopt;
      }
    }
    // Each iteration serves one request; pipelined requests wait in buffer_. Between requests
    // nothing but the connection itself stays allocated (no parser, no buffers).
    // Two statements, not `while (co_await wait_for_request() && co_await serve_one())`: built
    // by GCC 12, that form resumed with another session's state when wait_for_request()
    // suspended and then returned false (a client closing its idle connection left it open
    // while a different session was closed; test_relay_keepalive's IdleKeepAliveTest caught it).
    for (;;) {
      if (!co_await wait_for_request()) break;
      if (!co_await serve_one()) break;
    }
    if (!handed_off_) co_await lingering_close();
    co_return std::nullopt;
  }

  // ClientSide: what an exchange needs of this connection.
  const ClientInfo& info() const override { return info_; }

  bool request_body_done() const override { return parser_ == nullptr || parser_->is_done(); }

  void start_response(http::Response& header, const http::Framing& framing) override {
    assert(scratch_.head.empty());
    header.version(11);
    serialize_header(header, framing, scratch_.head);
    response_framing_ = framing.framing;
  }

  bool response_unsent() const override { return !scratch_.head.empty(); }

  void cancel_response() override { scratch_.head.clear(); }

  asio::awaitable<WriteResult> send_response(std::span<const asio::const_buffer> body,
                                             bool) override {
    assert(body.size() < 3);
    std::array<asio::const_buffer, 3> pieces{asio::buffer(scratch_.head)};
    std::copy(body.begin(), body.end(), pieces.begin() + 1);
    const auto written = co_await send(std::span(pieces.data(), body.size() + 1));
    scratch_.head.clear();
    co_return written;
  }

  asio::awaitable<WriteResult> send_generated(const http::ErrorResponse& answer) override {
    const auto bytes = http::serialize_error_response(answer);
    const std::array<asio::const_buffer, 1> pieces{asio::buffer(bytes)};
    co_return co_await send(pieces);
  }

  asio::awaitable<WriteResult> send_interim(http::Response& interim) override {
    start_response(interim, http::Framing{});
    co_return co_await send_response({}, false);
  }

  asio::awaitable<WriteResult> send_continue() override {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    const std::array<asio::const_buffer, 1> pieces{asio::buffer(kContinue)};
    co_return co_await send(pieces);
  }

  asio::awaitable<BodyRelay> relay_request_body(net::AnyStream& upstream,
                                                http::BodyFraming framing) override {
    assert(parser_ != nullptr);  // only while an exchange serves a request
    std::string no_head;
    co_return co_await client_.visit_with(upstream, [&](auto& in, auto& out) {
      return relay_body(in, buffer_, *parser_, out, no_head, framing, ctx_.chunks, chunk_lease(),
                        timeout_);
    });
  }

  asio::awaitable<BodyRelay> relay_response_body(UpstreamConnection& upstream,
                                                 http::ResponseParser& parser,
                                                 http::BodyFraming framing) override {
    co_return co_await upstream.stream.visit_with(client_, [&](auto& in, auto& out) {
      return relay_body(in, upstream.buffer, parser, out, scratch_.head, framing, ctx_.chunks,
                        chunk_lease(), timeout_);
    });
  }

  asio::awaitable<BodyRelay> relay_request_body(BodySink& sink) override {
    assert(parser_ != nullptr);
    co_return co_await client_.visit([&](auto& in) {
      return relay_body_to_sink(in, buffer_, *parser_, sink, *chunk_lease(), timeout_,
                                stop_request_body_);
    });
  }

  void stop_request_body() override {
    stop_request_body_ = true;
    error_code ignored;
    client_.socket().cancel(ignored);  // a body read under way ends
  }

  asio::awaitable<WriteResult> send_body_piece(const char* data, std::size_t size,
                                               bool last) override {
    http::BodyEncoder encoder(response_framing_);
    const auto prefix = size > 0 ? encoder.prefix(size) : std::string_view();
    const auto suffix = encoder.suffix(size, last);
    const std::array<asio::const_buffer, 4> pieces{
        asio::buffer(scratch_.head), asio::buffer(prefix.data(), prefix.size()),
        asio::buffer(data, size), asio::buffer(suffix.data(), suffix.size())};
    const auto written = co_await send(pieces);
    scratch_.head.clear();
    co_return written;
  }

  // HTTP/1.1 carries trailers only after a chunked body (RFC 9112 section 7.1.2).
  asio::awaitable<WriteResult> send_trailers(const FieldList& trailers) override {
    if (response_framing_ != http::BodyFraming::chunked) {
      co_return co_await send_body_piece(nullptr, 0, true);
    }
    const auto end = http::last_chunk_with_trailers(trailers);
    const std::array<asio::const_buffer, 2> pieces{asio::buffer(scratch_.head), asio::buffer(end)};
    const auto written = co_await send(pieces);
    scratch_.head.clear();
    co_return written;
  }

  asio::awaitable<TunnelStart> start_tunnel(
      std::unique_ptr<UpstreamConnection>& upstream, log::AccessLogEntry entry,
      std::chrono::steady_clock::time_point started,
      std::chrono::steady_clock::time_point backend_started) override {
    assert(!handed_off_);
    ctx_.pool.forget(*upstream);  // a long-lived tunnel does not hold one of maxSockets
    client_.tcp().expires_never();
    upstream->stream.tcp().expires_never();
    TunnelStart result;
    // Bytes that arrived with the handshake belong to the tunnel already.
    if (upstream->buffer.size() > 0) {
      auto [ec, n] = co_await client_.visit([&](auto& stream) {
        return asio::async_write(stream, upstream->buffer.data(), kUseTuple);
      });
      result.to_client += n;
      upstream->buffer.consume(upstream->buffer.size());
      result.failed = result.failed || ec;
    }
    if (!result.failed && buffer_.size() > 0) {
      auto [ec, n] = co_await upstream->stream.visit(
          [&](auto& stream) { return asio::async_write(stream, buffer_.data(), kUseTuple); });
      buffer_.consume(buffer_.size());
      result.failed = result.failed || ec;
    }
    if (result.failed) co_return result;
    // The tunnel goes on without this connection's coroutine, and logs when it closes.
    upstream->buffer.shrink_to_fit();
    entry.bytes_sent += result.to_client;
    proxy::start_tunnel(std::move(client_), std::move(upstream), ctx_, entry, started,
                        backend_started);
    handed_off_ = true;
    co_return result;
  }

 private:
  Http2Start hand_to_http2() {
    handed_off_ = true;
    return take_for_http2(client_, buffer_, info_);
  }

  // Closing a socket with unread input sends a reset that can destroy the answer just written
  // (an error page after a refused upload): half-close, then read and drop what the client
  // still sends, for a bounded time and amount.
  asio::awaitable<void> lingering_close() {
    error_code ignored;
    auto& socket = client_.socket();
    socket.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    if (socket.available(ignored) > 0 || buffer_.size() > 0) {
      client_.tcp().expires_after(kLingerTime);
      std::array<char, 4096> sink;
      std::size_t drained = 0;
      while (drained < kLingerBytes) {
        auto [ec, n] = co_await client_.tcp().async_read_some(asio::buffer(sink), kUseTuple);
        if (ec) break;
        drained += n;
      }
    }
    client_.tcp().close();
  }

  // Returns whether the connection may carry another request; false when it should close
  // instead, or was parked.
  asio::awaitable<bool> wait_for_request() {
    waiting_for_next_request_ = requests_served_ > 0 && buffer_.size() == 0;
    if (!waiting_for_next_request_) co_return true;  // first request, or one already pipelined
    const bool hand_over = ctx_.draining && !ctx_.closes_for_drain(client_.is_tls());
    if (ctx_.draining && !hand_over) co_return false;
    chunk_.reset();
    scratch_.release();
    request_memory_.release();
    if (!client_.is_tls()) {
      // A connection that has carried one request may well stay idle (a browser, a health
      // check): it parks at once. One that came back for more waits warm first. (Thousands of
      // sessions kept warm at once and then parked leave the heap fragmented: bench, idle row.)
      if (!hand_over && requests_before_park_ + requests_served_ >= kWarmAfterRequests) {
        const auto outcome = co_await wait_warm();
        if (outcome != WarmWait::park) {
          waiting_for_next_request_ = false;
          co_return outcome == WarmWait::request;
        }
      }
      // Nothing to keep but the socket: parked, the connection costs its socket and little more
      // (bench: idle keep-alive row); a new session serves its next request. It keeps no
      // bytes: pipelined ones would be lost. (A replaced worker's goes to a serving worker.)
      assert(buffer_.size() == 0 && !chunk_);
      ctx_.idle.park(client_.tcp().release_socket(), requests_before_park_ + requests_served_, ctx_,
                     proxied_);
      handed_off_ = true;
      co_return false;
    }
    buffer_.shrink_to_fit();
    const bool readable = co_await wait_readable();
    waiting_for_next_request_ = false;
    co_return readable;
  }

  enum class WarmWait { request, park, close };

  // Reads the first bytes of the next request for up to IdleConnections::kWarmPeriod.
  asio::awaitable<WarmWait> wait_warm() {
    warm_period_over_ = false;
    ctx_.idle.begin_wait(*this);
    // No deadline of its own: the warm period is shorter than any tcpTimeout that matters, and
    // an armed timer per wait is what this path avoids.
    client_.tcp().expires_never();
    auto [ec, n] =
        co_await client_.tcp().async_read_some(buffer_.prepare(kFirstReadSize), kUseTuple);
    IdleConnections::end_wait(*this);
    buffer_.commit(n);
    if (n > 0) co_return WarmWait::request;
    // Ended by the warm period, or by a drain that hands the connection over: it parks.
    if (ec == asio::error::operation_aborted && !ctx_.closes_for_drain(false) &&
        (warm_period_over_ || ctx_.draining)) {
      co_return WarmWait::park;
    }
    co_return WarmWait::close;  // the client closed, reset, or the worker drains
  }

  // Waits (within tcpTimeout) until the idle client sends something or goes away.
  asio::awaitable<bool> wait_readable() {
    asio::steady_timer deadline(client_.socket().get_executor());
    if (timeout_.count() > 0) {
      deadline.expires_after(timeout_);
    } else {
      deadline.expires_at(asio::steady_timer::time_point::max());
    }
    bool timed_out = false;
    auto& socket = client_.socket();
    deadline.async_wait([&socket, &timed_out](error_code ec) {
      if (ec) return;  // cancelled: touches nothing, it may run after this frame is gone
      timed_out = true;
      socket.cancel(ec);
    });
    auto [ec] = co_await socket.async_wait(asio::ip::tcp::socket::wait_read, kUseTuple);
    if (deadline.cancel() == 0 && !timed_out) {
      // The deadline fired as the client became readable: its handler is queued, not run, and
      // refers to this frame. The queue is first in, first out: let it run before returning.
      co_await asio::post(socket.get_executor(), asio::use_awaitable);
    }
    co_return !ec;
  }

  // Reads one request's header and hands the request to an exchange.
  asio::awaitable<bool> serve_one() {
    assert(parser_ == nullptr);
    request_memory_.release();  // the previous request's parser is gone
    RequestParser parser(std::piecewise_construct, std::make_tuple(),
                         std::make_tuple(request_memory_.allocator()));
    parser.header_limit(kHeaderLimit);
    parser.body_limit(boost::none);  // bodies stream; no size cap
    // One deadline for the whole header block (slowloris): trickling bytes does not extend it.
    set_deadline(client_, header_timeout());
    const auto [ec, used] = co_await client_.visit(
        [&](auto& stream) { return http::read_header(stream, buffer_, parser); });
    ++requests_served_;
    if (ec) {
      if (ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow) {
        co_await send_error_without_request(Failure::headers_too_large);
      } else if (is_parse_error(ec)) {
        co_await send_error_without_request(Failure::bad_request);
      }
      co_return false;  // closed, timed out, reset, or refused above
    }
    parser_ = &parser;
    stop_request_body_ = false;
    Exchange exchange(ctx_, *this, scratch_);
    const bool reusable = co_await exchange.serve(
        {parser.get(), parser.keep_alive(), parser.upgrade(), http::ParsedFraming::of(parser)});
    parser_ = nullptr;
    co_return reusable;
  }

  // A request too broken to be logged as one (unparsable or oversized headers).
  asio::awaitable<void> send_error_without_request(Failure failure) {
    http::ErrorResponse error;
    error.status = static_cast<unsigned>(classify(failure).status);
    error.body = ctx_.error_pages.body(classify(failure).status);
    co_await send_generated(error);
  }

  asio::awaitable<WriteResult> send(std::span<const asio::const_buffer> pieces) {
    set_deadline(client_, timeout_);
    auto [ec, n] = co_await client_.visit(
        [&](auto& stream) { return asio::async_write(stream, pieces, kUseTuple); });
    co_return WriteResult{ec, n};
  }

  std::chrono::seconds header_timeout() const {
    const auto configured = std::chrono::seconds(ctx_.config.server.header_timeout_s);
    if (configured.count() == 0) return timeout_;
    return timeout_.count() == 0 ? configured : std::min(configured, timeout_);
  }

  // A TLS handshake is bounded even when tcpTimeout is off.
  std::chrono::seconds handshake_timeout() const {
    return timeout_.count() > 0 ? timeout_ : std::chrono::seconds(30);
  }

  // The relay buffer is on loan only while a request is being relayed: an idle keep-alive
  // connection holds no body or read buffer (ARCHITECTURE.md, hot-path rules).
  RelayChunks::Lease& chunk_lease() {
    if (!chunk_) chunk_ = ctx_.chunks.take();
    return chunk_;
  }

  net::AnyStream client_;
  ProxyContext& ctx_;
  ClientInfo info_;
  // Bounded: a header block, or a chunk-size line with endless extensions, cannot grow it past
  // this (Beast then fails the read: 431 / 400).
  beast::flat_buffer buffer_{kReadBufferLimit};
  RelayChunks::Lease chunk_;
  // Declared before the parser whose fields it holds (a local of serve_one()).
  HeaderMemory request_memory_;
  RequestParser* parser_ = nullptr;  // the current request's, while an exchange serves it
  bool stop_request_body_ = false;   // the answer is complete: the body relay stops
  http::BodyFraming response_framing_ = http::BodyFraming::none;  // of the started answer
  ExchangeScratch scratch_;
  std::chrono::seconds timeout_{0};
  std::uint64_t requests_served_ = 0;       // by this session
  std::uint64_t requests_before_park_ = 0;  // on this connection, by sessions before a park
  bool waiting_for_next_request_ = false;
  bool handed_off_ = false;        // the connection went to ctx_.idle or a tunnel: nothing to close
  bool warm_period_over_ = false;  // stop_waiting() ended the current wait
  std::optional<net::ProxiedAddress> proxied_;  // the client, from a PROXY header
};

}  // namespace

asio::awaitable<void> serve_client(asio::ip::tcp::socket socket, ProxyContext& ctx,
                                   net::ssl::context* tls, std::uint64_t requests_before,
                                   std::optional<net::ProxiedAddress> proxied) {
  std::optional<Http2Start> http2;
  {
    Http1Connection connection(std::move(socket), ctx, tls, requests_before, proxied);
    auto outcome = co_await connection.run();
    if (outcome) http2.emplace(std::move(*outcome));  // (AnyStream cannot be assigned)
  }
  if (http2) {
    co_await serve_http2(std::move(http2->stream), std::move(http2->received), ctx,
                         std::move(http2->info));
  }
}

}  // namespace hipache::proxy
