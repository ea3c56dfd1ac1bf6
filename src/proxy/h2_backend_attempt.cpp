// One attempt of an exchange on an HTTP/2 backend (h2c:// or h2://): a connection (pooled after
// a clean stream, proxy/h2_upstream.hpp), the request as one stream, then the request body and
// the answer at the same time (gRPC streams both ways), the answer's trailers passed on. Retries,
// dead marks, error pages and the log line are the exchange's, as for HTTP/1.1 backends.
#include <spdlog/spdlog.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <cassert>

#include "hipache/balancer.hpp"
#include "http/ascii.hpp"
#include "http/fields.hpp"
#include "http/h2_fields.hpp"
#include "proxy/backend_errors.hpp"
#include "proxy/exchange.hpp"
#include "proxy/h2_upstream.hpp"
#include "proxy/retry_policy.hpp"
#include "proxy/upstream_pool.hpp"

namespace hipache::proxy {

namespace {

namespace bhttp = boost::beast::http;
using http::to_std;

// A request body up to this size, sent on a reused connection, is kept until the stream is over:
// a refused stream is then replayed on a fresh connection, body and all.
constexpr std::size_t kReplayableBody = 64 * 1024;

}  // namespace

asio::awaitable<Exchange::Attempt> Exchange::forward_h2(const std::string& host,
                                                        const Route& route) {
  using namespace asio::experimental::awaitable_operators;
  Attempt attempt;
  if (upgrade_) {
    attempt.failure = Failure::upgrade_to_http2_backend;
    co_return attempt;
  }
  if (backend_started_ == Clock::time_point{}) backend_started_ = Clock::now();
  const bool reuse = ctx_.config.server.http_keep_alive && !fresh_connection_;
  fresh_connection_ = false;
  const bool replayable = !body_pending() && is_idempotent(request_->method());
  auto acquired = co_await ctx_.pool.acquire(backend(route), reuse, replayable);
  if (acquired.failure) {
    attempt.failure = acquired.failure;
    co_return attempt;
  }
  auto upstream = acquired.h2
                      ? std::move(acquired.h2)
                      : std::make_shared<H2Upstream>(std::move(acquired.connection), timeout_);
  attempt.reused_connection = upstream->connection().reused;
  // One stream at a time: the connection holds one of maxSockets until the attempt ends, then
  // goes back to the pool if the stream ended cleanly (keep_h2 checks), or closes.
  struct Done {
    UpstreamPool& pool;
    std::shared_ptr<H2Upstream>& upstream;
    ~Done() { pool.keep_h2(upstream); }
  } done{ctx_.pool, upstream};
  // A body read whole on an earlier attempt whose stream the backend refused: sent again.
  const bool replay_body = !body_pending() && h2_body_copied_;
  const bool has_body = body_pending() || replay_body;
  http::H2FieldBlock fields;
  http::add_backend_request_fields(*request_, scratch_.forwarded, framing_, backend(route).tls,
                                   fields);
  const auto list = fields.list();
  if (!upstream->start(list, has_body)) {
    attempt.failure = Failure::bad_request;  // nghttp2 refused a field of the request
    co_return attempt;
  }
  attempt.phase = AttemptPhase::request_sent;
  if (body_pending() && attempt.reused_connection) {
    h2_body_copy_.clear();
    upstream->copy_body_into(h2_body_copy_, kReplayableBody);
  }
  if (!has_body) {
    co_return co_await relay_h2_answer(upstream, host, route, attempt);
  }
  if (replay_body) {
    auto [answered, replayed] =
        co_await (relay_h2_answer(upstream, host, route, attempt) && replay_h2_body(upstream));
    co_return answered;  // the copy stays: the body can be sent again
  }
  if (expects_continue_) {
    const auto written = co_await client_.send_continue();
    if (written.error) {
      attempt.client_reusable = false;
      co_return attempt;
    }
  }
  // Both at once: a gRPC server may answer (and stream) while the client still sends.
  auto [answered, uploaded] =
      co_await (relay_h2_answer(upstream, host, route, attempt) && send_h2_body(upstream));
  h2_body_copied_ = upstream->body_copied();
  if (!h2_body_copied_) h2_body_copy_.clear();
  answered.body_consumed = uploaded.body_started && !h2_body_copied_;
  // Refused before the client's whole body was read: its relay has been stopped and cannot
  // start over, so the request is not sent again.
  if (body_pending()) answered.unprocessed = false;
  if (uploaded.read_error && !answered.failure && !client_.request_body_done()) {
    // The answer went out before the whole request body arrived: that connection cannot read
    // its next request.
    answered.client_reusable = false;
  }
  const bool client_failed =
      uploaded.read_error && uploaded.read_error != asio::error::operation_aborted;
  if (is_parse_error(uploaded.read_error) && answered.phase != AttemptPhase::answer_started) {
    // A malformed chunk or trailer section: the backend's stream was reset, never ended, and
    // the client is refused, as with an HTTP/1.1 backend (upstream_attempt.cpp).
    answered.failure = Failure::bad_request;
    answered.unprocessed = false;
    answered.body_consumed = true;  // the request cannot be replayed
    answered.client_reusable = false;
  } else if (client_failed && answered.failure && answered.phase != AttemptPhase::answer_started) {
    // The client went away (or stalled) mid-body: nobody to answer, nothing to blame on the
    // backend. (operation_aborted: the relay was stopped because the attempt failed first.)
    answered.failure.reset();
    answered.client_reusable = false;
  }
  co_return answered;
}

asio::awaitable<BodyRelay> Exchange::send_h2_body(std::shared_ptr<H2Upstream> upstream) {
  auto relayed = co_await client_.relay_request_body(*upstream);
  // A client gone mid-body: the backend's stream is reset, and the answer's wait ends. (Not a
  // stream that ended cleanly meanwhile, whose relay was stopped: its connection is kept.)
  if (relayed.read_error && !upstream->reusable()) upstream->close();
  co_return relayed;
}

asio::awaitable<BodyRelay> Exchange::replay_h2_body(std::shared_ptr<H2Upstream> upstream) {
  BodyRelay replayed;
  replayed.write_error = co_await upstream->take(h2_body_copy_.data(), h2_body_copy_.size(), true);
  if (!replayed.write_error) replayed.bytes_written = h2_body_copy_.size();
  co_return replayed;
}

asio::awaitable<Exchange::Attempt> Exchange::relay_h2_answer(std::shared_ptr<H2Upstream> upstream,
                                                             const std::string& host,
                                                             const Route& route, Attempt attempt) {
  auto& up = *upstream;
  // Once the answer is over (or failed), the stream is: the request body's relay stops, whether
  // it waits for the client or for the backend's window.
  struct StopBody {
    ClientSide& client;
    H2Upstream& upstream;
    ~StopBody() {
      if (!upstream.reusable()) upstream.close();
      client.stop_request_body();
    }
  } stop_body{client_, up};

  while (!up.has_header() && !up.failed()) {
    if (!co_await up.wait_for_change()) {
      attempt.failure = Failure::backend_timeout;
      co_return attempt;
    }
  }
  if (!up.has_header()) {
    attempt.failure = up.answer_too_large() ? Failure::backend_bad_response
                                            : backend_failure(up.error(), BackendPhase::exchange);
    attempt.unprocessed = up.refused();
    co_return attempt;
  }
  backend_finished_ = Clock::now();
  const auto status = up.status();
  status_ = status;
  http::Response response;
  response.result(status);
  for (const auto& [name, value] : up.header()) response.insert(name, value);
  const auto framing_fields = http::read_framing_fields(response);
  const bool head = request_->method() == bhttp::verb::head;
  const bool no_body = status == 204 || status == 304 || head;
  const bool length_says_body =
      !framing_fields.content_length || *framing_fields.content_length > 0;
  // HTTP/2 has no 101, and nghttp2 already refused Transfer-Encoding and a Content-Length
  // that the DATA frames would contradict.
  const auto framing = http::response_framing(
      framing_fields, {status, 11, head, client_version_},
      http::ParsedFraming{false, framing_fields.content_length, !no_body && length_says_body});
  if (!framing.ok() || status == 101) {
    spdlog::debug("HTTP/2 backend {} of {}: invalid answer", backend(route).url, host);
    up.close();  // a backend that answers this way does not get the next request
    attempt.failure = Failure::backend_bad_response;
    co_return attempt;
  }
  const bool close_after = prepare_answer_header(response, framing, host, route);
  attempt.client_reusable = !close_after;
  if (!framing.body || (up.ended() && up.body().empty() && up.trailers().empty())) {
    // The header was the whole answer (gRPC's trailers-only status among them): one HEADERS
    // frame that ends the stream, or an HTTP/1.1 header with no body.
    http::Framing empty = framing;
    if (framing.body)
      empty = {http::FramingError::none, http::BodyFraming::content_length, 0, false};
    client_.start_response(response, empty);
    const auto written = co_await client_.send_response({}, true);
    attempt.phase = AttemptPhase::answer_started;
    bytes_sent_ += written.bytes;
    if (written.error) attempt.client_reusable = false;
    backend_finished_ = Clock::now();
    log_exchange();
    co_return attempt;
  }
  client_.start_response(response, framing);

  // The body as it arrives: a piece goes to the client while the next one is received.
  std::string passing;
  for (;;) {
    while (up.body().empty() && !up.ended() && !up.failed()) {
      if (!co_await up.wait_for_change()) break;
    }
    if (!up.body().empty()) {
      passing.swap(up.body());
      up.body().clear();
      const bool last = up.ended() && up.body().empty() && up.trailers().empty();
      const auto written = co_await client_.send_body_piece(passing.data(), passing.size(), last);
      attempt.phase = AttemptPhase::answer_started;
      bytes_sent_ += written.bytes;
      if (written.error) {
        attempt.client_reusable = false;  // the client went away: nothing more to do
        co_return attempt;
      }
      up.passed_on(passing.size());
      if (last) break;
      continue;
    }
    if (up.ended()) {
      const auto written = up.trailers().empty()
                               ? co_await client_.send_body_piece(nullptr, 0, true)
                               : co_await client_.send_trailers(up.trailers());
      attempt.phase = AttemptPhase::answer_started;
      bytes_sent_ += written.bytes;
      if (written.error) attempt.client_reusable = false;
      break;
    }
    // Failed or silent for tcpTimeout mid-answer.
    if (client_.response_unsent()) {
      client_.cancel_response();
      attempt.failure = up.failed() ? backend_failure(up.error(), BackendPhase::exchange)
                                    : Failure::backend_timeout;
      co_return attempt;
    }
    log_exchange();
    attempt.failure = Failure::backend_broken_body;
    co_return attempt;
  }
  backend_finished_ = Clock::now();
  log_exchange();
  co_return attempt;
}

}  // namespace hipache::proxy
