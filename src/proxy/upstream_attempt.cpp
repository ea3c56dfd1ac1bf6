// One attempt of an exchange on one backend: a connection from the pool, the request's header
// in our own framing, then (after answering 100-continue) its streamed body. The answer is
// response_relay.cpp's.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cassert>
#include <tuple>

#include "http/serialize.hpp"
#include "net/send_now.hpp"
#include "proxy/backend_errors.hpp"
#include "proxy/exchange.hpp"
#include "proxy/retry_policy.hpp"
#include "proxy/upstream_pool.hpp"

namespace hipache::proxy {

namespace bhttp = boost::beast::http;

asio::awaitable<Exchange::Attempt> Exchange::forward(const std::string& host, const Route& route) {
  if (backend(route).http2) co_return co_await forward_h2(host, route);
  Attempt attempt;
  auto& request = *request_;
  assert(scratch_.head.empty());  // no header of an earlier attempt left unsent
  bool body_cut_short = false;    // the backend stopped reading the request body
  if (backend_started_ == Clock::time_point{}) backend_started_ = Clock::now();
  const bool reuse = ctx_.config.server.http_keep_alive && !upgrade_ && !fresh_connection_;
  fresh_connection_ = false;
  const bool replayable = !body_pending() && is_idempotent(request.method());
  auto acquired = co_await ctx_.pool.acquire(backend(route), reuse, replayable);
  if (acquired.failure) {
    attempt.failure = acquired.failure;
    co_return attempt;
  }
  auto upstream = std::move(acquired.connection);
  attempt.reused_connection = upstream->reused;

  // An HTTP/1.1 request keeps alive unless told otherwise (and prepare_upstream_request() took
  // any Connection field but an upgrade's).
  if (!upgrade_ && !ctx_.config.server.http_keep_alive) {
    request.set(bhttp::field::connection, "close");
  }
  // Our own one-buffer header with our own framing field (http/framing.hpp), then the body.
  auto& head = scratch_.head;
  serialize_header(request, scratch_.forwarded, framing_, head);
  // The deadline also covers what follows (the body, the answer's first bytes).
  net::set_deadline(upstream->stream, timeout_);
  boost::system::error_code write_ec;
  const std::size_t sent = upstream->stream.is_tls() ? 0
                                                     : net::send_now(upstream->stream.socket(),
                                                                     asio::buffer(head), write_ec);
  if (!write_ec && sent < head.size()) {
    std::tie(write_ec, std::ignore) = co_await upstream->stream.visit([&](auto& stream) {
      return asio::async_write(stream, asio::buffer(head.data() + sent, head.size() - sent),
                               asio::as_tuple(asio::use_awaitable));
    });
  }
  head.clear();
  if (write_ec) {
    co_return fail_upstream(std::move(upstream), attempt,
                            backend_failure(write_ec, BackendPhase::exchange));
  }
  attempt.phase = AttemptPhase::request_sent;
  if (body_pending()) {
    if (expects_continue_) {
      const auto written = co_await client_.send_continue();
      if (written.error) co_return fail_client(std::move(upstream), attempt);
    }
    const auto relayed = co_await client_.relay_request_body(upstream->stream, framing_.framing);
    attempt.body_consumed = relayed.body_started;
    if (is_parse_error(relayed.read_error)) {
      // A malformed chunk: the backend connection is abandoned mid-request (it never sees the
      // bad bytes) and the client is refused.
      ctx_.pool.release(std::move(upstream), false);
      attempt.failure = Failure::bad_request;
      attempt.body_consumed = true;  // the request cannot be replayed
      co_return attempt;
    }
    if (relayed.read_error) co_return fail_client(std::move(upstream), attempt);
    if (relayed.write_error) {
      // The backend stopped taking the body. It may have answered already (413, 401...): give
      // it a moment to say so, and relay that instead of a 502.
      body_cut_short = true;
      client_keep_alive_ = false;  // the rest of the body is still in the socket
    }
  }
  co_return co_await relay_response(std::move(upstream), host, route, attempt, body_cut_short);
}

// The backend connection failed (a write, a read, garbage, or a body cut short).
Exchange::Attempt Exchange::fail_upstream(std::unique_ptr<UpstreamConnection> upstream,
                                          Attempt attempt, Failure failure) {
  attempt.failure = failure;
  ctx_.pool.release(std::move(upstream), false);
  return attempt;
}

// The client went away or stalled: nobody to answer, nothing to blame on the backend.
Exchange::Attempt Exchange::fail_client(std::unique_ptr<UpstreamConnection> upstream,
                                        Attempt attempt) {
  ctx_.pool.release(std::move(upstream), false);
  attempt.client_reusable = false;
  attempt.failure.reset();  // no retry, no error page
  return attempt;
}

}  // namespace hipache::proxy
