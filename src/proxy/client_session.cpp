// One client connection: read a request, route it, relay it to a backend and the response back,
// repeat while the connection is kept alive. Failures are classified once (hipache/errors.hpp)
// and that classification decides retry, dead marking and the error page.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <bitset>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstring>
#include <memory_resource>

#include "hipache/address_range.hpp"
#include "hipache/balancer.hpp"
#include "hipache/errors.hpp"
#include "hipache/router.hpp"
#include "http/error_response.hpp"
#include "http/field_value.hpp"
#include "http/fields.hpp"
#include "http/framing.hpp"
#include "http/message.hpp"
#include "http/serialize.hpp"
#include "net/stream.hpp"
#include "proxy/backend_errors.hpp"
#include "proxy/proxy_context.hpp"
#include "proxy/relay.hpp"
#include "proxy/retry_policy.hpp"
#include "proxy/tunnel.hpp"

namespace hipache::proxy {

namespace {

namespace bhttp = beast::http;
using boost::system::error_code;
using http::HeaderMemory;
using http::MessageParser;
using http::Request;
using http::RequestParser;
using http::Response;
using http::ResponseParser;
using http::to_std;
using net::set_deadline;
using Clock = std::chrono::steady_clock;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

// Request header block limit: beyond it the client gets 431 (Node's parser allowed 80 KB).
constexpr std::uint32_t kHeaderLimit = 64 * 1024;
// The first read of a kept-alive connection's next request: most request headers fit.
constexpr std::size_t kFirstReadSize = 1024;
// From this many requests on, a connection waits warm for its next one (wait_for_request).
constexpr std::uint64_t kWarmAfterRequests = 2;
// Beyond these a request is refused (414 / 431 / 400) before any routing: docs/security.md.
constexpr std::size_t kMaxTargetLength = 8 * 1024;
constexpr std::size_t kMaxHeaderFields = 100;
constexpr std::size_t kMaxMethodLength = 32;
// A DNS name has at most 253 characters; a longer Host would only fill the route caches.
constexpr std::size_t kMaxHostLength = 255;
// Most a client read buffer may hold: a full header block plus 16 KB (docs/security.md).
constexpr std::size_t kReadBufferLimit = kHeaderLimit + 16 * 1024;
// How long a backend that stopped reading an upload gets to send its answer (413, 401...).
constexpr std::chrono::seconds kEarlyAnswerWait{2};
constexpr std::size_t kMaxForwardedForLength = 8 * 1024;
constexpr std::chrono::seconds kLingerTime{2};
constexpr std::size_t kLingerBytes = 256 * 1024;

bool is_idempotent(bhttp::verb method) {
  switch (method) {
    case bhttp::verb::get:
    case bhttp::verb::head:
    case bhttp::verb::put:
    case bhttp::verb::delete_:
    case bhttp::verb::options:
    case bhttp::verb::trace:
      return true;
    default:
      return false;
  }
}

std::string client_address(const asio::ip::tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  // Hipache listened dual-stack, so IPv4 clients appeared as IPv4-mapped IPv6 addresses.
  if (address.is_v4()) return "::ffff:" + address.to_string();
  return address.to_string();
}

std::chrono::milliseconds elapsed_ms(Clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - since);
}

class ClientSession final : public DrainableSession, public IdleConnections::Waiter {
 public:
  ClientSession(asio::ip::tcp::socket socket, ProxyContext& ctx, net::ssl::context* tls,
                std::uint64_t requests_before)
      : client_(tls ? net::AnyStream(net::TcpStream(std::move(socket)), *tls)
                    : net::AnyStream(net::TcpStream(std::move(socket)))),
        ctx_(ctx),
        timeout_(ctx_.config.server.tcp_timeout_s),
        requests_before_park_(requests_before) {
    ctx_.sessions.insert(this);
    // Asked again after a park rather than kept there: a parked connection stays small.
    error_code ec;
    const auto remote = client_.socket().remote_endpoint(ec);
    remote_ = ec ? std::string("-") : client_address(remote);
    const auto local = client_.socket().local_endpoint(ec);
    local_port_ = ec ? std::string() : std::to_string(local.port());
    if (requests_before == 0) client_.socket().set_option(asio::ip::tcp::no_delay(true), ec);
  }

  ~ClientSession() { ctx_.sessions.erase(this); }
  ClientSession(const ClientSession&) = delete;
  ClientSession& operator=(const ClientSession&) = delete;

  // Between requests of a kept-alive connection there is nothing to lose by closing. A new
  // connection is not idle: its first request is on its way.
  void close_if_idle() override {
    if (waiting_for_next_request_) client_.tcp().cancel();
  }

  // The warm period is over: the read waiting for the next request ends, and the session parks.
  void stop_waiting() override {
    warm_period_over_ = true;
    error_code ignored;
    client_.socket().cancel(ignored);
  }

  asio::awaitable<void> run() {
    if (auto* tls = client_.tls()) {
      set_deadline(client_, handshake_timeout());
      auto [ec] = co_await tls->async_handshake(net::ssl::stream_base::server, kUseTuple);
      if (ec) {
        spdlog::debug("TLS handshake with {} failed: {}", remote_, ec.message());
        client_.tcp().close();
        co_return;
      }
    }
    // Each iteration serves one request; pipelined requests wait in buffer_. Between requests
    // nothing but the connection itself stays allocated (no parser, no buffers).
    // Two statements, not `while (co_await wait_for_request() && co_await serve_one())`: built
    // by GCC 12, that form resumed with another session's state when wait_for_request()
    // suspended and then returned false (a client closing its idle connection left it open
    // while a different session was closed; test_relay's IdleKeepAliveTest caught it).
    for (;;) {
      if (!co_await wait_for_request()) break;
      if (!co_await serve_one()) break;
    }
    if (!handed_off_) co_await lingering_close();
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

 private:
  struct Exchange {
    Clock::time_point started = Clock::now();
    Clock::time_point backend_started{};
    Clock::time_point backend_finished{};
    unsigned status = 0;
    std::uint64_t bytes_sent = 0;
    std::string_view identifier = "-";  // the route's, which outlives the exchange
    // Facts about the client's request, taken before it is rewritten for the backend.
    unsigned client_version = 11;
    bool client_keep_alive = true;
    bool wants_debug = false;       // X-Debug present
    bool has_expect = false;        // an Expect field (ours to answer, never forwarded)
    bool expects_continue = false;  // Expect: 100-continue from an HTTP/1.1 client
    bool upgrade = false;           // Connection: upgrade + Upgrade (WebSocket and the like)
    http::Framing framing;          // of the request, as it goes to the backend
    // For the access log, taken from the header: the fields a chunked body's trailers add to
    // the request must not stand in for them. (Views into the request's header memory, which
    // frees nothing until the next request.)
    std::string_view real_ip;  // X-Real-IP as forwarded, when the client's is kept
    std::string_view referer;
    std::string_view user_agent;
  };

  // Returns whether the connection may carry another request.
  // Returns false when the connection should close instead, or was parked.
  asio::awaitable<bool> wait_for_request() {
    waiting_for_next_request_ = requests_served_ > 0 && buffer_.size() == 0;
    if (!waiting_for_next_request_) co_return true;  // first request, or one already pipelined
    if (ctx_.draining) co_return false;
    chunk_.reset();
    response_reader_.reset();
    response_memory_.release();
    request_memory_.release();
    if (!client_.is_tls()) {
      // A connection that has carried one request may well stay idle (a browser, a health
      // check): it parks at once. One that came back for more waits warm first. (Thousands of
      // sessions kept warm at once and then parked leave the heap fragmented: bench, idle row.)
      if (requests_before_park_ + requests_served_ >= kWarmAfterRequests) {
        const auto outcome = co_await wait_warm();
        if (outcome != WarmWait::park) {
          waiting_for_next_request_ = false;
          co_return outcome == WarmWait::request;
        }
      }
      // Nothing to keep but the socket: parked, the connection costs its socket and little more
      // (bench: idle keep-alive row); a new session serves its next request.
      ctx_.idle.park(client_.tcp().release_socket(), requests_before_park_ + requests_served_,
                     ctx_);
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
    if (ec == asio::error::operation_aborted && warm_period_over_ && !ctx_.draining) {
      co_return WarmWait::park;
    }
    co_return WarmWait::close;  // the client closed, reset, or the worker drains
  }

  asio::awaitable<bool> serve_one() {
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
    auto& request = parser.get();
    const http::RequestFields fields(request);
    Exchange exchange;
    exchange.client_version = request.version();
    exchange.client_keep_alive = parser.keep_alive();
    exchange.upgrade = parser.upgrade();
    exchange.has_expect = fields.expect;
    exchange.referer = to_std(fields.referer);
    exchange.user_agent = to_std(fields.user_agent);
    exchange.real_ip = to_std(request["X-Real-IP"]);
    exchange.expects_continue =
        beast::iequals(fields.expect_value, "100-continue") && request.version() >= 11;

    // The framing rules (http/framing.hpp) decide how the body is read and forwarded; two Host
    // headers make routing ambiguous.
    exchange.framing =
        http::request_framing(fields.framing, request.version(), http::ParsedFraming::of(parser));
    if (!exchange.framing.ok() || fields.host_count > 1 ||
        request.method_string().size() > kMaxMethodLength) {
      co_await send_error(request, exchange, Failure::bad_request, false);
      co_return false;
    }
    if (request.target().size() > kMaxTargetLength) {
      co_await send_error(request, exchange, Failure::uri_too_long, false);
      co_return false;
    }
    if (fields.count > kMaxHeaderFields) {
      co_await send_error(request, exchange, Failure::headers_too_large, false);
      co_return false;
    }
    // RFC 9112 section 3.2.2: an absolute-form target's authority replaces the Host header; the
    // backend gets the usual origin-form.
    const auto target_form = use_absolute_form_authority(request);
    if (target_form == TargetForm::invalid) {
      co_await send_error(request, exchange, Failure::bad_request, false);
      co_return false;
    }

    const auto host_header =
        target_form == TargetForm::absolute ? request[bhttp::field::host] : fields.host;
    const auto host = normalize_host(host_header);
    if (host == "__ping__") {
      co_return co_await send_ping(request, parser);
    }
    if (host.empty()) {
      co_await send_error(request, exchange, Failure::missing_host, false);
      co_return false;
    }
    if (host.size() > kMaxHostLength) {
      co_await send_error(request, exchange, Failure::host_too_long, false);
      co_return false;
    }

    // (Not `cached ? std::move(*cached) : co_await ...`: built by GCC 12, that form served
    // routes older than a write the request had waited for; test_route_cache caught it.)
    RouteLookup lookup;
    if (auto cached = ctx_.store.cached(host)) {
      lookup = std::move(*cached);
    } else {
      lookup = co_await ctx_.store.lookup(host);
    }
    if (lookup.status != RouteLookup::Status::found) {
      const auto failure = lookup.status == RouteLookup::Status::unavailable
                               ? Failure::store_unavailable
                               : Failure::frontend_not_found;
      co_return co_await send_error(request, exchange, failure, body_pending(parser));
    }
    exchange.identifier = lookup.route->identifier;
    co_return co_await proxy(parser, host, *lookup.route, exchange);
  }

  static bool body_pending(const RequestParser& parser) { return !parser.is_done(); }

  std::chrono::seconds header_timeout() const {
    const auto configured = std::chrono::seconds(ctx_.config.server.header_timeout_s);
    if (configured.count() == 0) return timeout_;
    return timeout_.count() == 0 ? configured : std::min(configured, timeout_);
  }

  enum class TargetForm { other, absolute, invalid };

  // "GET http://host:port/path HTTP/1.1": route by (and forward as Host) the target's authority,
  // forward the path. An absolute-form target without an authority is invalid.
  static TargetForm use_absolute_form_authority(Request& request) {
    const auto target = request.target();
    std::size_t scheme_length = 0;
    if (beast::iequals(target.substr(0, 7), "http://")) {
      scheme_length = 7;
    } else if (beast::iequals(target.substr(0, 8), "https://")) {
      scheme_length = 8;
    } else {
      return TargetForm::other;  // origin-form (or "*" / authority-form): nothing to do
    }
    const auto rest = target.substr(scheme_length);
    const auto path_start = rest.find_first_of("/?");
    auto authority = rest.substr(0, path_start);
    if (const auto at = authority.rfind('@'); at != beast::string_view::npos) {
      authority = authority.substr(at + 1);
    }
    if (authority.empty()) return TargetForm::invalid;
    std::string path = path_start == beast::string_view::npos
                           ? std::string("/")
                           : std::string(rest.substr(path_start));
    if (path.front() == '?') path.insert(path.begin(), '/');
    request.set(bhttp::field::host, authority);
    request.target(path);
    return TargetForm::absolute;
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

  asio::awaitable<bool> send_ping(const Request& request, const RequestParser& parser) {
    bhttp::response<bhttp::string_body> response{bhttp::status::ok, 11};
    response.set(bhttp::field::content_type, "text/plain");
    response.body() = "ok";
    const bool keep = request.keep_alive() && !body_pending(parser) && !ctx_.draining;
    response.keep_alive(keep);
    if (keep && request.version() == 10) response.set(bhttp::field::connection, "keep-alive");
    response.prepare_payload();
    set_deadline(client_, timeout_);
    auto [ec, n] = co_await client_.visit(
        [&](auto& stream) { return bhttp::async_write(stream, response, kUseTuple); });
    co_return !ec && keep;
  }

  // Forwards the request, retrying on another backend when that is safe (SPEC section 6).
  asio::awaitable<bool> proxy(RequestParser& parser, const std::string& host, const Route& route,
                              Exchange& exchange) {
    auto& request = parser.get();
    prepare_upstream_request(request, exchange);

    std::vector<bool> excluded;  // sized at the first failure: most requests never need it
    std::optional<Failure> last_failure;
    RetryBudget budget;
    budget.replayable_after_send = parser.is_done() && is_idempotent(request.method());
    budget.retries_left = ctx_.config.server.retry_on_error;

    for (;;) {
      // The replay on a fresh connection goes to the backend whose pooled connection failed.
      const auto index = fresh_connection_ ? std::optional<std::size_t>(current_.index)
                                           : pick_backend(route, excluded, ctx_.rng);
      if (!index) {
        co_return co_await send_error(request, exchange,
                                      last_failure.value_or(Failure::no_live_backend),
                                      body_pending(parser));
      }
      const Backend& backend = route.backends[*index];
      if (!backend.valid) {
        co_return co_await send_error(request, exchange, Failure::bad_backend_url,
                                      body_pending(parser));
      }
      current_ = {&backend, *index};

      Attempt attempt = co_await forward(parser, host, backend, route, exchange);
      budget.body_consumed = budget.body_consumed || attempt.body_consumed;
      if (!attempt.failure) co_return attempt.client_reusable;

      const auto decision =
          decide_retry({*attempt.failure, attempt.request_sent, attempt.response_started,
                        attempt.stale_reuse, attempt.no_dead_mark},
                       budget);
      if (decision.mark_dead) {
        spdlog::warn("backend {} of {} failed: {}", backend.url, host,
                     classify(*attempt.failure).reason);
        ctx_.store.mark_dead(host, route, *index);
      }
      last_failure = attempt.failure;
      switch (decision.next) {
        case NextStep::close_client:
          co_return false;
        case NextStep::retry_on_fresh_connection:
          budget.fresh_retry_used = true;
          fresh_connection_ = true;
          continue;
        case NextStep::error_page:
          co_return co_await send_error(request, exchange, *attempt.failure, body_pending(parser));
        case NextStep::retry_elsewhere:
          break;
      }
      excluded.resize(route.backends.size());
      excluded[*index] = true;
      --budget.retries_left;
    }
  }

  // Headers for the backend: hop-by-hop removed (but an upgrade stays an upgrade),
  // X-Forwarded-* added when absent. Also notes whether the client asked for X-Debug headers.
  void prepare_upstream_request(Request& request, Exchange& exchange) {
    if (exchange.has_expect) request.erase(bhttp::field::expect);  // we answer 100-continue
    const bool upgrade = exchange.upgrade;
    const std::string protocol(upgrade ? request[bhttp::field::upgrade] : beast::string_view());
    http::remove_hop_by_hop(request);
    if (upgrade) {
      request.set(bhttp::field::connection, "Upgrade");
      request.set(bhttp::field::upgrade, protocol);
    }
    // The fields added when absent, after X-Debug (Beast knows none of these names).
    static constexpr std::array<std::string_view, 6> kLookedFor = {
        "X-Debug",           "X-Forwarded-For",      "X-Real-IP",
        "X-Forwarded-Proto", "X-Forwarded-Protocol", "X-Forwarded-Port"};
    auto present = http::find_unknown_fields(request, kLookedFor);
    exchange.wants_debug = present[0];
    static constexpr std::string_view kForwardedHeaders[] = {
        "X-Forwarded-For",  "X-Real-IP",        "X-Forwarded-Proto", "X-Forwarded-Protocol",
        "X-Forwarded-Port", "X-Forwarded-Host", "Forwarded"};
    if (const auto& trusted = ctx_.config.server.trust_proxies) {
      if (address_in_ranges(remote_, *trusted)) {
        // A trusted proxy in front of us: keep its headers, append the hop it came from.
        const auto forwarded_for = request["X-Forwarded-For"];
        // Beast caps a field at 64 KB; a chain that long is not worth extending.
        if (!forwarded_for.empty() && forwarded_for.size() < kMaxForwardedForLength) {
          request.set("X-Forwarded-For", std::string(forwarded_for) + ", " + remote_);
        }
      } else {
        // Anyone else could claim any address: their forwarded headers are dropped.
        for (const auto name : kForwardedHeaders) request.erase(name);
        exchange.real_ip = {};
        present.reset();
        present[0] = exchange.wants_debug;
      }
    }
    const char* scheme = client_.is_tls() ? "https" : "http";
    const std::array<std::string_view, kLookedFor.size()> values = {
        std::string_view(), remote_, remote_, scheme, scheme, local_port_};
    forwarded_ = http::AddedFields{};
    for (std::size_t i = 1; i < kLookedFor.size(); ++i) {
      if (!present[i]) forwarded_.add(kLookedFor[i], values[i]);
    }
    request.version(11);
  }

  struct Attempt {
    std::optional<Failure> failure;
    bool request_sent = false;      // some byte of the request reached the backend
    bool body_consumed = false;     // some body byte was read from the client
    bool response_started = false;  // some byte of the response reached the client
    bool stale_reuse = false;       // a pooled connection failed before any response byte
    bool no_dead_mark = false;      // a failure that says nothing about the backend's health
    bool client_reusable = false;
  };

  asio::awaitable<Attempt> forward(RequestParser& parser, const std::string& host,
                                   const Backend& backend, const Route& route, Exchange& exchange) {
    Attempt attempt;
    auto& request = parser.get();
    bool body_cut_short = false;  // the backend stopped reading the request body
    if (exchange.backend_started == Clock::time_point{}) exchange.backend_started = Clock::now();
    const bool reuse =
        ctx_.config.server.http_keep_alive && !exchange.upgrade && !fresh_connection_;
    fresh_connection_ = false;
    const bool replayable = parser.is_done() && is_idempotent(request.method());
    auto acquired = co_await ctx_.pool.acquire(backend, reuse, replayable);
    if (acquired.failure) {
      attempt.failure = acquired.failure;
      co_return attempt;
    }
    auto upstream = std::move(acquired.connection);

    // Request: header, then (after answering 100-continue) the streamed body.
    // An HTTP/1.1 request keeps alive unless told otherwise (and prepare_upstream_request() took
    // any Connection field but an upgrade's).
    if (!exchange.upgrade && !ctx_.config.server.http_keep_alive) {
      request.set(bhttp::field::connection, "close");
    }
    // Our own one-buffer header with our own framing field (http/framing.hpp), then the body.
    serialize_header(request, forwarded_, exchange.framing, head_);
    set_deadline(upstream->stream, timeout_);
    auto [write_ec, header_bytes] = co_await upstream->stream.visit(
        [&](auto& stream) { return asio::async_write(stream, asio::buffer(head_), kUseTuple); });
    head_.clear();
    if (write_ec) {
      co_return fail_upstream(std::move(upstream), attempt,
                              backend_failure(write_ec, BackendPhase::exchange));
    }
    attempt.request_sent = true;
    if (!parser.is_done()) {
      if (exchange.expects_continue) {
        static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        set_deadline(client_, timeout_);
        auto [ec, n] = co_await client_.visit([&](auto& stream) {
          return asio::async_write(stream, asio::buffer(kContinue), kUseTuple);
        });
        if (ec) co_return fail_client(std::move(upstream), attempt);
      }
      auto relayed = co_await client_.visit_with(upstream->stream, [&](auto& in, auto& out) {
        return relay_body(in, buffer_, parser, out, head_, exchange.framing.framing, ctx_.chunks,
                          chunk_lease(), timeout_);
      });
      attempt.body_consumed = relayed.body_started;
      if (is_parse_error(relayed.read_error)) {
        // A malformed chunk: the backend connection is abandoned mid-request (it never sees
        // the bad bytes) and the client is refused.
        ctx_.pool.release(std::move(upstream), false);
        attempt.failure = Failure::bad_request;
        attempt.body_consumed = true;  // the request cannot be replayed
        co_return attempt;
      }
      if (relayed.read_error) co_return fail_client(std::move(upstream), attempt);
      if (relayed.write_error) {
        // The backend stopped taking the body. It may have answered already (413, 401...):
        // give it a moment to say so, and relay that instead of a 502.
        body_cut_short = true;
        exchange.client_keep_alive = false;  // the rest of the body is still in the socket
      }
    }

    co_return co_await relay_response(std::move(upstream), request, host, route, exchange, attempt,
                                      body_cut_short);
  }

  // The backend's answer to the request forward() sent: interim 1xx answers skipped (or relayed
  // to HTTP/1.1 clients), then the final one relayed to the client. A coroutine of its own: in
  // one frame with forward() it took the frame over the 1020 bytes Asio recycles.
  asio::awaitable<Attempt> relay_response(std::unique_ptr<UpstreamConnection> upstream,
                                          Request& request, const std::string& host,
                                          const Route& route, Exchange& exchange, Attempt attempt,
                                          bool body_cut_short) {
    const unsigned client_version = exchange.client_version;
    // A member, not a local: in this coroutine's frame it would take the frame over the size
    // Asio recycles (see the serializers in forward()).
    auto& response_reader = response_reader_;
    for (;;) {
      response_reader.reset();  // an interim answer's fields go before the next answer's
      response_memory_.release();
      response_reader.emplace(std::piecewise_construct, std::make_tuple(),
                              std::make_tuple(response_memory_.allocator()));
      response_reader->body_limit(boost::none);
      response_reader->header_limit(kHeaderLimit);
      if (request.method() == bhttp::verb::head) response_reader->skip(true);
      set_deadline(upstream->stream, body_cut_short ? kEarlyAnswerWait : timeout_);
      const auto [ec, used] = co_await upstream->stream.visit([&](auto& stream) {
        return http::read_header(stream, upstream->buffer, *response_reader);
      });
      if (ec && body_cut_short) {
        // No answer: the upload failed, but that alone does not make the backend dead.
        attempt.failure = Failure::backend_reset;
        attempt.no_dead_mark = true;
        ctx_.pool.release(std::move(upstream), false);
        co_return attempt;
      }
      if (ec)
        co_return fail_upstream(std::move(upstream), attempt,
                                backend_failure(ec, BackendPhase::exchange));
      const auto status = response_reader->get().result_int();
      if (!http::status_is_valid(status))
        co_return fail_upstream(std::move(upstream), attempt, Failure::backend_bad_response);
      if (!http::status_is_interim(status)) break;
      if (client_version >= 11 && !(status == 100 && exchange.expects_continue)) {
        const auto wec = co_await send_interim(response_reader->get());
        if (wec) co_return fail_client(std::move(upstream), attempt);
      }
    }
    exchange.backend_finished = Clock::now();

    auto& response = response_reader->get();
    const auto status = response.result_int();
    exchange.status = status;
    if (status == 101) {
      // RFC 9110 section 7.8: only to an upgrade the request asked for, to a protocol it offered;
      // anything else would have us read the new protocol's bytes as HTTP.
      if (exchange.upgrade && http::upgrade_matches(to_std(request[bhttp::field::upgrade]),
                                                    to_std(response[bhttp::field::upgrade]))) {
        co_return co_await tunnel(std::move(upstream), request, response, route, host, exchange,
                                  attempt);
      }
      spdlog::debug("backend {} of {}: 101 to a request that did not ask for it",
                    current_.backend->url, host);
      co_return fail_upstream(std::move(upstream), attempt, Failure::backend_bad_response);
    }
    // The framing rules (http/framing.hpp): how the answer is read and how it is forwarded.
    const auto framing = http::response_framing(
        http::read_framing_fields(response),
        {status, response.version(), request.method() == bhttp::verb::head, client_version},
        http::ParsedFraming::of(*response_reader));
    if (!framing.ok()) {
      spdlog::debug("backend {} of {}: {}", current_.backend->url, host,
                    http::describe(framing.error));
      co_return fail_upstream(std::move(upstream), attempt, Failure::backend_bad_response);
    }
    // 500 counts only while passive checks are on (SPEC section 6); other 5xx always publish,
    // and the store leaves out SADD/EXPIRE while an external checker runs.
    // (Only a 5xx needs the Retry-After lookup.)
    const bool retry_after =
        status >= 500 && response.find(bhttp::field::retry_after) != response.end();
    if (status_marks_dead(
            static_cast<int>(status), retry_after,
            ctx_.config.server.dead_backend_on_500 && ctx_.store.passive_checks_enabled())) {
      // The 5xx answer is still relayed; the backend is just taken out of rotation.
      ctx_.store.mark_dead(host, route, current_.index);
    }
    const bool backend_reusable = response_reader->keep_alive();

    // Towards the client: our framing, and a close after a refused upgrade (the client may be
    // sending the new protocol already) or a body that only the close delimits.
    http::remove_hop_by_hop(response);
    const bool close_after = !exchange.client_keep_alive || ctx_.draining || exchange.upgrade ||
                             framing.framing == http::BodyFraming::close;
    // HTTP/1.1 keeps alive unless told otherwise; remove_hop_by_hop() took any Connection field.
    response.version(11);
    if (close_after) response.set(bhttp::field::connection, "close");
    if (!close_after && client_version == 10) response.set(bhttp::field::connection, "keep-alive");
    if (exchange.wants_debug) add_debug_headers(response, host, route, exchange);
    serialize_header(response, framing, head_);

    // A body that came whole with its header (small answers) leaves with it in one send, straight
    // from the backend's read buffer: no relay buffer, no copy, no relay coroutines. (The parser
    // stops after the header, so the body bytes are still in the buffer, unparsed.) Only a
    // Content-Length body is forwarded as received.
    const auto body_remaining = response_reader->content_length_remaining();
    bool body_done = !framing.body;  // the backend's answer is read to its end
    if (framing.body && framing.framing == http::BodyFraming::content_length && body_remaining &&
        *body_remaining <= upstream->buffer.size()) {
      const auto body_size = static_cast<std::size_t>(*body_remaining);
      set_deadline(client_, timeout_);
      auto [ec, n] = co_await client_.visit([&](auto& stream) {
        const std::array<asio::const_buffer, 2> pieces{
            asio::buffer(head_), asio::buffer(upstream->buffer.data().data(), body_size)};
        return asio::async_write(stream, pieces, kUseTuple);  // (copies `pieces`)
      });
      head_.clear();
      attempt.response_started = true;
      upstream->buffer.consume(body_size);
      exchange.bytes_sent += n;
      if (ec) co_return fail_client(std::move(upstream), attempt);
      body_done = true;
    } else if (!framing.body || upstream->buffer.size() == 0) {
      // Other body bytes that came with the header leave with it (below), so that a body
      // malformed from its first byte still gets a 502. Otherwise the header goes out at once:
      // a streaming answer's client sees it before the first byte.
      set_deadline(client_, timeout_);
      auto [hec, hn] = co_await client_.visit(
          [&](auto& stream) { return asio::async_write(stream, asio::buffer(head_), kUseTuple); });
      head_.clear();
      attempt.response_started = true;
      exchange.bytes_sent += hn;
      if (hec) co_return fail_client(std::move(upstream), attempt);
    }
    if (!body_done) {
      auto relayed = co_await upstream->stream.visit_with(client_, [&](auto& in, auto& out) {
        return relay_body(in, upstream->buffer, *response_reader, out, head_, framing.framing,
                          ctx_.chunks, chunk_lease(), timeout_);
      });
      exchange.bytes_sent += relayed.bytes_written;
      if (relayed.read_error && !head_.empty()) {
        // Not a byte of it reached the client: the backend's failure gets an error page.
        head_.clear();
        co_return fail_upstream(std::move(upstream), attempt,
                                backend_failure(relayed.read_error, BackendPhase::exchange));
      }
      attempt.response_started = true;  // from here on, the client gets this answer or a close
      if (relayed.read_error) {
        // The backend stopped mid-response: close the client connection, never fake success.
        log_exchange(request, exchange);
        attempt.failure = Failure::backend_broken_body;
        ctx_.pool.release(std::move(upstream), false);
        co_return attempt;
      }
      if (relayed.write_error) co_return fail_client(std::move(upstream), attempt);
      body_done = response_reader->is_done();
    }
    exchange.backend_finished = Clock::now();
    log_exchange(request, exchange);
    // Bytes after the answer were never asked for: they must not become the next request's.
    ctx_.pool.release(std::move(upstream),
                      backend_reusable && body_done && upstream->buffer.size() == 0);
    attempt.client_reusable = !close_after;
    co_return attempt;
  }

  // An interim (1xx) answer for an HTTP/1.1 client, with its fields (103 Early Hints carries
  // Link fields) but not the hop-by-hop ones. A coroutine of its own, so forward()'s frame does
  // not carry it.
  asio::awaitable<error_code> send_interim(Response& interim) {
    http::remove_hop_by_hop(interim);
    interim.version(11);
    serialize_header(interim, http::Framing{}, head_);
    set_deadline(client_, timeout_);
    auto [ec, n] = co_await client_.visit(
        [&](auto& stream) { return asio::async_write(stream, asio::buffer(head_), kUseTuple); });
    head_.clear();
    co_return ec;
  }

  // After a 101 answer: relay the answer and what came with the handshake, then hand both
  // connections to a tunnel (proxy/tunnel.hpp); this session ends.
  asio::awaitable<Attempt> tunnel(std::unique_ptr<UpstreamConnection> upstream,
                                  const Request& request, Response& response, const Route& route,
                                  const std::string& host, Exchange& exchange, Attempt attempt) {
    if (exchange.wants_debug) add_debug_headers(response, host, route, exchange);
    // The handshake's Connection and Upgrade fields go on; framing fields have no place in it.
    response.erase(bhttp::field::content_length);
    response.erase(bhttp::field::transfer_encoding);
    serialize_header(response, http::Framing{}, head_);
    set_deadline(client_, timeout_);
    auto [ec, n] = co_await client_.visit(
        [&](auto& stream) { return asio::async_write(stream, asio::buffer(head_), kUseTuple); });
    head_.clear();
    exchange.bytes_sent += n;
    attempt.response_started = true;
    if (ec) co_return fail_client(std::move(upstream), attempt);
    ctx_.pool.forget(*upstream);  // a long-lived tunnel does not hold one of maxSockets
    client_.tcp().expires_never();
    upstream->stream.tcp().expires_never();

    std::uint64_t to_client = 0;
    bool failed = false;
    // Bytes that arrived with the handshake belong to the tunnel already.
    if (upstream->buffer.size() > 0) {
      auto [wec, wn] = co_await client_.visit([&](auto& stream) {
        return asio::async_write(stream, upstream->buffer.data(), kUseTuple);
      });
      to_client += wn;
      upstream->buffer.consume(upstream->buffer.size());
      failed = failed || wec;
    }
    if (!failed && buffer_.size() > 0) {
      auto [wec, wn] = co_await upstream->stream.visit(
          [&](auto& stream) { return asio::async_write(stream, buffer_.data(), kUseTuple); });
      buffer_.consume(buffer_.size());
      failed = failed || wec;
    }
    exchange.status = 101;
    exchange.bytes_sent += to_client;
    attempt.client_reusable = false;
    if (failed) {
      exchange.backend_finished = Clock::now();
      log_exchange(request, exchange);
      co_return attempt;
    }
    // The tunnel goes on without this session, and logs the exchange when it closes.
    upstream->buffer.shrink_to_fit();
    start_tunnel(std::move(client_), std::move(upstream), ctx_, access_entry(request, exchange),
                 exchange.started, exchange.backend_started);
    handed_off_ = true;
    co_return attempt;
  }

  // The client went away or stalled: nobody to answer, nothing to blame on the backend.
  // The backend connection failed (a write, a read, or garbage) before the answer started.
  Attempt fail_upstream(std::unique_ptr<UpstreamConnection> upstream, Attempt attempt,
                        Failure failure) {
    attempt.failure = failure;
    // Only a close or reset before any answer looks like a pooled connection gone stale; a
    // timeout or garbage is the backend's own doing.
    attempt.stale_reuse =
        upstream->reused && !attempt.response_started && failure == Failure::backend_reset;
    ctx_.pool.release(std::move(upstream), false);
    return attempt;
  }

  Attempt fail_client(std::unique_ptr<UpstreamConnection> upstream, Attempt attempt) {
    ctx_.pool.release(std::move(upstream), false);
    attempt.response_started = true;  // stops retries and error pages
    attempt.client_reusable = false;
    attempt.failure.reset();
    return attempt;
  }

  template <class Message>
  void add_debug_headers(Message& message, const std::string& host, const Route& route,
                         const Exchange& exchange) {
    // Both come from Redis: no byte of theirs may start a header line of its own.
    message.set("x-debug-backend-url", http::escape_field_value(current_.backend->url));
    message.set("x-debug-backend-id", std::to_string(current_.index));
    message.set("x-debug-vhost", http::escape_field_value(route.identifier));
    message.set("x-debug-frontend-key", host);
    message.set("x-debug-time-total", std::to_string(elapsed_ms(exchange.started).count()));
    const auto backend_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
        exchange.backend_finished - exchange.backend_started);
    message.set("x-debug-time-backend", std::to_string(backend_ms.count()));
    message.set("x-debug-version-hipache", HIPACHE_VERSION);
  }

  // Error page (SPEC section 7). If the request body was not read, the connection cannot be
  // reused (its bytes would be taken for the next request), so it is closed after the answer.
  asio::awaitable<bool> send_error(const Request& request, Exchange& exchange, Failure failure,
                                   bool unread_body) {
    const auto failure_class = classify(failure);
    // After a refused upgrade the client may already be sending the new protocol's bytes:
    // they must never be read as the next HTTP request.
    // The client's own keep-alive wish: `request` may already be rewritten for a backend.
    const bool keep = exchange.client_keep_alive && !unread_body && !ctx_.draining &&
                      !exchange.upgrade && failure_class.source != FailureSource::client;
    http::ErrorResponse error;
    error.status = static_cast<unsigned>(failure_class.status);
    error.body = ctx_.error_pages.body(failure_class.status);
    error.keep_alive = keep;
    error.http10_client = exchange.client_version == 10;
    if (request.find("X-Debug") != request.end()) error.debug_reason = failure_class.reason;
    const auto n = co_await write_error(error);
    exchange.status = failure_class.status;
    exchange.bytes_sent += n.value_or(0);
    if (exchange.backend_finished == Clock::time_point{}) {
      exchange.backend_finished = exchange.backend_started;
    }
    log_exchange(request, exchange);
    co_return n.has_value() && keep;
  }

  // A request too broken to be logged as one (unparsable or oversized headers).
  asio::awaitable<void> send_error_without_request(Failure failure) {
    http::ErrorResponse error;
    error.status = static_cast<unsigned>(classify(failure).status);
    error.body = ctx_.error_pages.body(classify(failure).status);
    co_await write_error(error);
  }

  // The bytes written, or nothing when the write failed.
  asio::awaitable<std::optional<std::size_t>> write_error(const http::ErrorResponse& error) {
    head_ = http::serialize_error_response(error);
    set_deadline(client_, timeout_);
    auto [ec, n] = co_await client_.visit(
        [&](auto& stream) { return asio::async_write(stream, asio::buffer(head_), kUseTuple); });
    head_.clear();
    co_return ec ? std::nullopt : std::optional<std::size_t>(n);
  }

  void log_exchange(const Request& request, const Exchange& exchange) {
    if (!ctx_.access_log.enabled()) return;
    auto entry = access_entry(request, exchange);
    entry.total = elapsed_ms(exchange.started);
    entry.backend = std::chrono::duration_cast<std::chrono::milliseconds>(
        exchange.backend_finished - exchange.backend_started);
    entry.when = std::chrono::system_clock::now();
    ctx_.access_log.write(entry);
  }

  // The access-log line of an exchange but its times, which the caller fills in.
  log::AccessLogEntry access_entry(const Request& request, const Exchange& exchange) const {
    log::AccessLogEntry entry;
    entry.remote = exchange.real_ip.empty() ? std::string_view(remote_) : exchange.real_ip;
    entry.method = to_std(request.method_string());
    entry.target = to_std(request.target());
    entry.version = exchange.client_version == 10 ? 10 : 11;
    entry.status = exchange.status;
    entry.bytes_sent = exchange.bytes_sent;
    entry.referer = exchange.referer;
    entry.user_agent = exchange.user_agent;
    entry.identifier = exchange.identifier;
    return entry;
  }

  // The backend the current attempt goes to (for dead marking and x-debug headers).
  struct CurrentBackend {
    const Backend* backend = nullptr;
    std::size_t index = 0;
  };

  net::AnyStream client_;
  ProxyContext& ctx_;
  // Bounded: a header block, or a chunk-size line with endless extensions, cannot grow it
  // past this (Beast then fails the read: 431 / 400).
  beast::flat_buffer buffer_{kReadBufferLimit};
  // The relay buffer is on loan only while a request is being relayed: an idle keep-alive
  // connection holds no body or read buffer (ARCHITECTURE.md, hot-path rules).
  RelayChunks::Lease chunk_;
  RelayChunks::Lease& chunk_lease() {
    if (!chunk_) chunk_ = ctx_.chunks.take();
    return chunk_;
  }
  std::string head_;  // a header serialized by serialize_header(), until it is written
  // Declared before the parsers whose fields they hold, so destroyed after them.
  HeaderMemory request_memory_;
  HeaderMemory response_memory_;
  std::optional<ResponseParser> response_reader_;  // the backend's answer to the current request
  // X-Forwarded-* fields for the backend that the client's request lacks (values: remote_,
  // local_port_ and literals, all outliving the request).
  http::AddedFields forwarded_;
  std::string remote_;
  std::string local_port_;
  std::chrono::seconds timeout_{0};

  // A TLS handshake is bounded even when tcpTimeout is off.
  std::chrono::seconds handshake_timeout() const {
    return timeout_.count() > 0 ? timeout_ : std::chrono::seconds(30);
  }
  CurrentBackend current_;
  bool fresh_connection_ = false;           // the next attempt must not take a pooled connection
  std::uint64_t requests_served_ = 0;       // by this session
  std::uint64_t requests_before_park_ = 0;  // on this connection, by sessions before a park
  bool waiting_for_next_request_ = false;
  bool handed_off_ = false;        // the connection went to ctx_.idle or a tunnel: nothing to close
  bool warm_period_over_ = false;  // stop_waiting() ended the current wait
};

}  // namespace

asio::awaitable<void> serve_client(asio::ip::tcp::socket socket, ProxyContext& ctx,
                                   net::ssl::context* tls, std::uint64_t requests_before) {
  ClientSession session(std::move(socket), ctx, tls, requests_before);
  co_await session.run();
}

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

void begin_drain(ProxyContext& ctx) {
  ctx.draining = true;
  ctx.idle.close_all();
  for (auto* session : ctx.sessions) session->close_if_idle();
}

}  // namespace hipache::proxy
