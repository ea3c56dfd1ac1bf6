// The backend's answer to the request an attempt sent: interim 1xx answers skipped (or relayed
// to HTTP/1.1 clients), then the final one to the client in our own framing; after a 101 the
// handshake, and both connections go to a tunnel.
#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cassert>

#include "hipache/balancer.hpp"
#include "http/fields.hpp"
#include "http/read.hpp"
#include "http/serialize.hpp"
#include "proxy/backend_errors.hpp"
#include "proxy/exchange.hpp"
#include "proxy/upstream_pool.hpp"

namespace hipache::proxy {

namespace {

namespace bhttp = boost::beast::http;
using http::to_std;

// How long a backend that stopped reading an upload gets to send its answer (413, 401...).
constexpr std::chrono::seconds kEarlyAnswerWait{2};

}  // namespace

// A coroutine of its own: in one frame with forward() it took the frame over the size Asio
// recycles.
asio::awaitable<Exchange::Attempt> Exchange::relay_response(
    std::unique_ptr<UpstreamConnection> upstream, const std::string& host, const Route& route,
    Attempt attempt, bool body_cut_short) {
  assert(attempt.phase == AttemptPhase::request_sent && !attempt.failure);
  auto& request = *request_;
  // A member, not a local: in this coroutine's frame it would take the frame over that size.
  auto& response_reader = scratch_.response_reader;
  for (;;) {
    scratch_.release();  // an interim answer's fields go before the next answer's
    response_reader.emplace(std::piecewise_construct, std::make_tuple(),
                            std::make_tuple(scratch_.response_memory.allocator()));
    response_reader->body_limit(boost::none);
    response_reader->header_limit(http::kHeaderLimit);
    if (request.method() == bhttp::verb::head) response_reader->skip(true);
    net::set_deadline(upstream->stream, body_cut_short ? kEarlyAnswerWait : timeout_);
    const auto [ec, used] = co_await upstream->stream.visit([&](auto& stream) {
      return http::read_header(stream, upstream->buffer, *response_reader);
    });
    if (ec && body_cut_short) {
      // No answer: the upload failed, but that alone does not make the backend dead.
      co_return fail_upstream(std::move(upstream), attempt, Failure::backend_stopped_reading);
    }
    if (ec) {
      co_return fail_upstream(std::move(upstream), attempt,
                              backend_failure(ec, BackendPhase::exchange));
    }
    const auto status = response_reader->get().result_int();
    if (!http::status_is_valid(status)) {
      co_return fail_upstream(std::move(upstream), attempt, Failure::backend_bad_response);
    }
    if (!http::status_is_interim(status)) break;
    if (client_version_ >= 11 && !(status == 100 && expects_continue_)) {
      const auto wec = co_await send_interim(response_reader->get());
      if (wec) co_return fail_client(std::move(upstream), attempt);
    }
  }
  backend_finished_ = Clock::now();

  auto& response = response_reader->get();
  const auto status = response.result_int();
  status_ = status;
  if (status == 101) {
    // RFC 9110 section 7.8: only to an upgrade the request asked for, to a protocol it offered;
    // anything else would have us read the new protocol's bytes as HTTP.
    if (upgrade_ && http::upgrade_matches(to_std(request[bhttp::field::upgrade]),
                                          to_std(response[bhttp::field::upgrade]))) {
      co_return co_await tunnel(std::move(upstream), response, route, host, attempt);
    }
    spdlog::debug("backend {} of {}: 101 to a request that did not ask for it", backend(route).url,
                  host);
    co_return fail_upstream(std::move(upstream), attempt, Failure::backend_bad_response);
  }
  // The framing rules (http/framing.hpp): how the answer is read and how it is forwarded.
  const auto framing = http::response_framing(
      http::read_framing_fields(response),
      {status, response.version(), request.method() == bhttp::verb::head, client_version_},
      http::ParsedFraming::of(*response_reader));
  if (!framing.ok()) {
    spdlog::debug("backend {} of {}: {}", backend(route).url, host, http::describe(framing.error));
    co_return fail_upstream(std::move(upstream), attempt, Failure::backend_bad_response);
  }
  const bool backend_reusable = response_reader->keep_alive();
  const bool close_after = prepare_answer_header(response, framing, host, route);
  client_.start_response(response, framing);

  // A body that came whole with its header (small answers) leaves with it in one send, straight
  // from the backend's read buffer: no relay buffer, no copy, no relay coroutines. (The parser
  // stops after the header, so the body bytes are still in the buffer, unparsed.) Only a
  // Content-Length body is forwarded as received.
  const auto body_remaining = response_reader->content_length_remaining();
  bool body_done = !framing.body;  // the backend's answer is read to its end
  if (framing.body && framing.framing == http::BodyFraming::content_length && body_remaining &&
      *body_remaining <= upstream->buffer.size()) {
    const auto body_size = static_cast<std::size_t>(*body_remaining);
    const std::array<asio::const_buffer, 1> body{
        asio::buffer(upstream->buffer.data().data(), body_size)};
    const auto written = co_await client_.send_response(body, true);
    attempt.phase = AttemptPhase::answer_started;
    upstream->buffer.consume(body_size);
    bytes_sent_ += written.bytes;
    if (written.error) co_return fail_client(std::move(upstream), attempt);
    body_done = true;
  } else if (!framing.body || upstream->buffer.size() == 0) {
    // Other body bytes that came with the header leave with it (below), so that a body
    // malformed from its first byte still gets a 502. Otherwise the header goes out at once: a
    // streaming answer's client sees it before the first byte.
    const auto written = co_await client_.send_response({}, !framing.body);
    attempt.phase = AttemptPhase::answer_started;
    bytes_sent_ += written.bytes;
    if (written.error) co_return fail_client(std::move(upstream), attempt);
  }
  if (!body_done) {
    const auto relayed =
        co_await client_.relay_response_body(*upstream, *response_reader, framing.framing);
    bytes_sent_ += relayed.bytes_written;
    if (relayed.read_error && client_.response_unsent()) {
      // Not a byte of it reached the client: the backend's failure gets an error page.
      client_.cancel_response();
      co_return fail_upstream(std::move(upstream), attempt,
                              backend_failure(relayed.read_error, BackendPhase::exchange));
    }
    attempt.phase = AttemptPhase::answer_started;  // the client gets this answer or a close
    if (relayed.read_error) {
      // The backend stopped mid-response: close the client connection, never fake success.
      log_exchange();
      attempt.failure = Failure::backend_broken_body;
      ctx_.pool.release(std::move(upstream), false);
      co_return attempt;
    }
    if (relayed.write_error) co_return fail_client(std::move(upstream), attempt);
    body_done = response_reader->is_done();
  }
  assert(!client_.response_unsent() && attempt.phase == AttemptPhase::answer_started);
  backend_finished_ = Clock::now();
  log_exchange();
  // Bytes after the answer were never asked for: they must not become the next request's.
  ctx_.pool.release(std::move(upstream),
                    backend_reusable && body_done && upstream->buffer.size() == 0);
  attempt.client_reusable = !close_after;
  co_return attempt;
}

// A backend's final answer header as the client gets it, whichever protocol the backend spoke.
// 500 counts only while passive checks are on (SPEC section 6); other 5xx always publish, and
// the store leaves out SADD/EXPIRE while an external checker runs (the answer is still relayed).
// Towards the client: our framing, and a close after a refused upgrade (the client may be
// sending the new protocol already) or a body that only the close delimits. Returns whether the
// client connection closes after the answer.
bool Exchange::prepare_answer_header(http::Response& response, const http::Framing& framing,
                                     const std::string& host, const Route& route) {
  const auto status = response.result_int();
  // (Only a 5xx needs the Retry-After lookup.)
  const bool retry_after =
      status >= 500 && response.find(bhttp::field::retry_after) != response.end();
  if (status_marks_dead(
          static_cast<int>(status), retry_after,
          ctx_.config.server.dead_backend_on_500 && ctx_.health.passive_checks_enabled())) {
    mark_backend_dead(host, route, {});
  }
  http::remove_hop_by_hop(response);
  const bool close_after = !client_keep_alive_ || ctx_.closes_for_drain(client_.info().tls) ||
                           upgrade_ || framing.framing == http::BodyFraming::close;
  // HTTP/1.1 keeps alive unless told otherwise; remove_hop_by_hop() took any Connection field.
  response.version(11);
  if (close_after) response.set(bhttp::field::connection, "close");
  if (!close_after && client_version_ == 10) response.set(bhttp::field::connection, "keep-alive");
  if (wants_debug_) add_debug_headers(response, host, route);
  add_request_id(response);
  return close_after;
}

// An interim (1xx) answer for an HTTP/1.1 or HTTP/2 client, with its fields (103 Early Hints
// carries Link fields) but not the hop-by-hop ones.
asio::awaitable<boost::system::error_code> Exchange::send_interim(http::Response& interim) {
  http::remove_hop_by_hop(interim);
  const auto written = co_await client_.send_interim(interim);
  co_return written.error;
}

// After a 101 answer: relay the answer, then the client connection hands both connections to a
// tunnel (proxy/tunnel.hpp) and ends.
asio::awaitable<Exchange::Attempt> Exchange::tunnel(std::unique_ptr<UpstreamConnection> upstream,
                                                    http::Response& response, const Route& route,
                                                    const std::string& host, Attempt attempt) {
  if (wants_debug_) add_debug_headers(response, host, route);
  add_request_id(response);
  // The handshake's Connection and Upgrade fields go on; framing fields have no place in it.
  response.erase(bhttp::field::content_length);
  response.erase(bhttp::field::transfer_encoding);
  client_.start_response(response, http::Framing{});
  const auto written = co_await client_.send_response({}, false);
  bytes_sent_ += written.bytes;
  attempt.phase = AttemptPhase::answer_started;
  if (written.error) co_return fail_client(std::move(upstream), attempt);

  status_ = 101;
  attempt.client_reusable = false;
  const auto started =
      co_await client_.start_tunnel(upstream, access_entry(), started_, backend_started_);
  bytes_sent_ += started.to_client;
  if (started.failed) {
    backend_finished_ = Clock::now();
    log_exchange();
  }
  co_return attempt;
}

}  // namespace hipache::proxy
