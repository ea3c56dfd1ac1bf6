// One HTTP/2 stream as an exchange's client side: the answer's header as HEADERS, its body
// through an nghttp2 data source that hands out one piece at a time, the request body from the
// DATA frames received.
#include "proxy/http2_stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cassert>

#include "http/ascii.hpp"
#include "http/fields.hpp"
#include "proxy/http2_connection.hpp"
#include "proxy/relay.hpp"
#include "proxy/upstream_pool.hpp"

namespace hipache::proxy {

namespace {

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

// RFC 9113 section 8.2.2: connection-specific fields have no place in HTTP/2. (The exchange
// took the hop-by-hop ones already, but adds Connection: close or keep-alive for HTTP/1.)
bool connection_specific(std::string_view name) {
  for (const std::string_view banned :
       {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te"}) {
    if (http::iequals(name, banned)) return true;
  }
  return false;
}

ssize_t read_outbound(nghttp2_session*, std::int32_t, std::uint8_t* out, std::size_t length,
                      std::uint32_t* flags, nghttp2_data_source* source, void*) {
  return static_cast<Http2Stream*>(source->ptr)->read_outbound(out, length, flags);
}

}  // namespace

Http2Stream::Http2Stream(Http2Connection& connection, std::int32_t id)
    : connection_(connection),
      id_(id),
      request_(http::Request::header_type(request_memory_.allocator())) {}

const ClientInfo& Http2Stream::info() const {
  return connection_.info();
}

void Http2Stream::on_data(const std::uint8_t* data, std::size_t size) {
  if (exchange_done_) {
    consume(size);  // the rest of a body nobody waits for any more
    return;
  }
  inbound_.append(reinterpret_cast<const char*>(data), size);
  wake();
}

bool Http2Stream::on_trailer(std::string_view name, std::string_view value) {
  request_trailer_bytes_ += name.size() + value.size() + 32;  // as RFC 9113 counts a field
  if (request_trailer_bytes_ > http::kHeaderLimit) return false;
  request_trailers_.emplace_back(name, value);
  return true;
}

void Http2Stream::on_request_end() {
  request_ended_ = true;
  wake();
}

void Http2Stream::on_close() {
  if (closed_) return;
  closed_ = true;
  // Bytes nobody will forward still count against the connection's window.
  if (!inbound_.empty()) {
    nghttp2_session_consume_connection(connection_.session(), inbound_.size());
    inbound_.clear();
  }
  wake();
}

// Also after the stream closed: the bytes still count against the connection's window (nghttp2
// then updates that one alone), or uploads cut short by resets would close it for good.
void Http2Stream::consume(std::size_t size) {
  if (size == 0) return;
  nghttp2_session_consume(connection_.session(), id_, size);
  connection_.want_write();
}

void Http2Stream::finish_exchange() {
  exchange_done_ = true;
  if (closed_) return;
  if (!header_submitted_) {
    // The exchange ended without an answer (the client went away, or the backend broke off):
    // the stream is reset, never left open.
    nghttp2_submit_rst_stream(connection_.session(), NGHTTP2_FLAG_NONE, id_,
                              NGHTTP2_INTERNAL_ERROR);
  } else if (!response_complete_ && outbound_.empty() && !outbound_last_) {
    // The answer was cut short: a reset tells the client it is incomplete.
    nghttp2_submit_rst_stream(connection_.session(), NGHTTP2_FLAG_NONE, id_,
                              NGHTTP2_INTERNAL_ERROR);
  } else if (tunnelling_ && !request_ended_) {
    // A tunnel over (idle, or its backend gone) after our END_STREAM: the client's half too.
    nghttp2_submit_rst_stream(connection_.session(), NGHTTP2_FLAG_NONE, id_, NGHTTP2_CANCEL);
  }
  consume(inbound_.size());
  inbound_.clear();
  connection_.want_write();
}

asio::awaitable<void> Http2Stream::refuse(Failure failure) {
  http::ErrorResponse error;
  error.status = static_cast<unsigned>(classify(failure).status);
  error.body = connection_.context().error_pages.body(classify(failure).status);
  co_await send_generated(error);
}

void Http2Stream::add_message_fields(const http::Response& message) {
  for (const auto& field : message) {
    const auto name = http::to_std(field.name_string());
    // RFC 8441 section 5: the key was ours, and the client checks no accept value.
    if (websocket_ && field.name() == boost::beast::http::field::sec_websocket_accept) continue;
    if (!connection_specific(name)) fields_.add(name, http::to_std(field.value()));
  }
}

void Http2Stream::begin_header(unsigned status) {
  fields_.clear();
  fields_.add(":status", std::to_string(status));
}

void Http2Stream::start_response(http::Response& header, const http::Framing& framing) {
  assert(!header_submitted_);
  // RFC 8441 section 5: a WebSocket's upgrade is accepted with a 200 on the stream.
  const auto status = header.result_int();
  begin_header(websocket_ && status == 101 ? 200 : status);
  add_message_fields(header);
  if (framing.framing == http::BodyFraming::content_length) {
    fields_.add("content-length", std::to_string(framing.length));
  }
  header_ready_ = true;
}

void Http2Stream::cancel_response() {
  header_ready_ = false;
  fields_.clear();
}

int Http2Stream::submit_header(bool ends_stream) {
  assert(header_ready_ && !header_submitted_);
  const auto fields = fields_.list();
  header_submitted_ = true;
  nghttp2_data_provider provider{};
  provider.source.ptr = this;
  provider.read_callback = &proxy::read_outbound;
  const int status = nghttp2_submit_response(connection_.session(), id_, fields.data(),
                                             fields.size(), ends_stream ? nullptr : &provider);
  if (ends_stream) response_complete_ = true;
  connection_.want_write();
  return status;
}

ssize_t Http2Stream::read_outbound(std::uint8_t* out, std::size_t length, std::uint32_t* flags) {
  const auto n = std::min(length, outbound_.size());
  std::copy_n(outbound_.data(), n, out);
  outbound_ = outbound_.subspan(n);
  if (outbound_.empty()) {
    if (outbound_last_) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      response_complete_ = true;
      if (trailers_pending_) {
        trailers_pending_ = false;
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        const auto fields = fields_.list();
        nghttp2_submit_trailer(connection_.session(), id_, fields.data(), fields.size());
      }
    }
    wake();  // the piece is taken: the relay reads the next one
    if (n == 0 && !outbound_last_) return NGHTTP2_ERR_DEFERRED;
  }
  return static_cast<ssize_t>(n);
}

asio::awaitable<bool> Http2Stream::wait_for_progress() {
  const auto timeout = connection_.timeout();
  asio::steady_timer timer(connection_.executor(), asio::steady_timer::time_point::max());
  if (timeout.count() > 0) timer.expires_after(timeout);
  progress_waiters_.push_back(&timer);
  auto [ec] = co_await timer.async_wait(kUseTuple);
  std::erase(progress_waiters_, &timer);
  co_return ec == asio::error::operation_aborted;  // woken, not timed out
}

// Hands `data` to the data source; the caller then waits until nghttp2 took all of it into
// frames. (Not a coroutine that also waits, nor a helper coroutine for that wait: built by GCC
// 12, such member coroutines awaited from another one either never ran their body or were
// resumed in a state they did not have, and the worker crashed.)
int Http2Stream::hand_over(std::span<const char> data, bool last) {
  assert(outbound_.empty());
  if (closed_) return NGHTTP2_ERR_STREAM_CLOSED;
  outbound_ = data;
  outbound_last_ = last;
  if (!header_submitted_) return submit_header(false);
  connection_.want_write();
  return nghttp2_session_resume_data(connection_.session(), id_) == NGHTTP2_ERR_NOMEM
             ? NGHTTP2_ERR_NOMEM
             : 0;
}

asio::awaitable<WriteResult> Http2Stream::send_response(std::span<const asio::const_buffer> body,
                                                        bool complete) {
  if (closed_) co_return WriteResult{asio::error::connection_reset, 0};
  // A small body goes whole into the stream's own copy: the exchange reuses its buffer.
  body_copy_.clear();
  for (const auto& piece : body) {
    body_copy_.append(static_cast<const char*>(piece.data()), piece.size());
  }
  WriteResult result{{}, body_copy_.size() + fields_.bytes()};
  if (body_copy_.empty() && complete) {
    if (submit_header(true) != 0) result.error = asio::error::connection_reset;
    co_return result;
  }
  outbound_ = std::span<const char>(body_copy_);
  outbound_last_ = complete;
  if (submit_header(false) != 0) result.error = asio::error::connection_reset;
  co_return result;
}

asio::awaitable<WriteResult> Http2Stream::send_generated(const http::ErrorResponse& answer) {
  begin_header(answer.status);
  answer.for_each_field(
      [this](std::string_view name, std::string_view value) { fields_.add(name, value); });
  fields_.add("content-length", std::to_string(answer.body.size()));
  header_ready_ = true;
  const std::array<asio::const_buffer, 1> body{asio::buffer(answer.body)};
  co_return co_await send_response(body, true);
}

asio::awaitable<WriteResult> Http2Stream::send_interim(http::Response& interim) {
  if (closed_) co_return WriteResult{asio::error::connection_reset, 0};
  begin_header(interim.result_int());
  add_message_fields(interim);
  const auto fields = fields_.list();
  const int status = nghttp2_submit_headers(connection_.session(), NGHTTP2_FLAG_NONE, id_, nullptr,
                                            fields.data(), fields.size(), nullptr);
  connection_.want_write();
  const auto bytes = fields_.bytes();
  fields_.clear();
  co_return WriteResult{status == 0 ? boost::system::error_code{} : asio::error::connection_reset,
                        bytes};
}

asio::awaitable<WriteResult> Http2Stream::send_continue() {
  http::Response interim;
  interim.result(100);
  co_return co_await send_interim(interim);
}

asio::awaitable<BodyRelay> Http2Stream::relay_request_body(net::AnyStream& upstream,
                                                           http::BodyFraming framing) {
  BodyRelay result;
  http::BodyEncoder encoder(framing);
  for (;;) {
    while (inbound_.empty() && !request_ended_ && !closed_ && !stop_request_body_) {
      if (!co_await wait_for_progress()) {
        result.read_error = asio::error::timed_out;
        co_return result;
      }
    }
    if (stop_request_body_) {
      result.read_error = asio::error::operation_aborted;
      co_return result;
    }
    if (inbound_.empty() && !request_ended_) {
      result.read_error = asio::error::connection_reset;  // the client reset the stream
      co_return result;
    }
    // DATA keeps arriving while the write is under way: what is written moves out first.
    const bool last = request_ended_;
    forwarding_.swap(inbound_);
    inbound_.clear();
    const auto size = forwarding_.size();
    // Forwarded with a Content-Length, the body has no place for them: they are dropped.
    if (last) encoder.end_with_trailers(request_trailers_);
    const auto prefix = encoder.prefix(size);
    const auto suffix = encoder.suffix(size, last);
    const std::array<asio::const_buffer, 3> pieces{asio::buffer(prefix.data(), prefix.size()),
                                                   asio::buffer(forwarding_),
                                                   asio::buffer(suffix.data(), suffix.size())};
    net::set_deadline(upstream, connection_.timeout());
    auto [ec, n] = co_await upstream.visit(
        [&](auto& stream) { return asio::async_write(stream, pieces, kUseTuple); });
    result.body_started = result.body_started || size > 0;
    consume(size);  // taken from the client, sent or not: the window reopens
    if (ec) {
      result.write_error = ec;
      co_return result;
    }
    if (last) co_return result;
  }
}

asio::awaitable<BodyRelay> Http2Stream::relay_response_body(UpstreamConnection& upstream,
                                                            http::ResponseParser& parser,
                                                            http::BodyFraming) {
  BodyRelay result;
  auto& ctx = connection_.context();
  auto chunk = ctx.chunks.take();
  http::TrailerSection trailer_section;
  trailer_section.remember_header(parser);
  make_room_for_body(upstream.buffer, parser);
  boost::system::error_code read_ec;
  std::size_t got = 0;
  for (;;) {
    std::tie(read_ec, got) = co_await upstream.stream.visit([&](auto& in) {
      return read_body_piece(in, upstream.buffer, parser, *chunk, connection_.timeout());
    });
    result.body_started = result.body_started || got > 0;
    const auto trailers = take_trailers(trailer_section, parser, read_ec);
    if (read_ec) {
      // What arrived goes on; the answer is never completed (finish_exchange resets the stream).
      result.read_error = read_ec;
      if (got == 0 || response_unsent()) co_return result;
    }
    const bool last = !read_ec && parser.is_done();
    // The trailer section becomes a HEADERS frame that ends the stream after the last DATA.
    if (last && !trailers.empty() && end_with_trailers(trailers) != 0) {
      result.write_error = asio::error::connection_reset;
      co_return result;
    }
    if (hand_over({(*chunk).data(), got}, last) != 0) {
      result.write_error = asio::error::connection_reset;
      co_return result;
    }
    // The data source copies the piece into frames as the client's window allows.
    while (!outbound_.empty() && !closed_) {
      if (!co_await wait_for_progress()) {
        result.write_error = give_up_piece();
        co_return result;
      }
    }
    if (!outbound_.empty()) {
      result.write_error = give_up_piece();
      co_return result;
    }
    result.bytes_written += got;
    if (last || read_ec) co_return result;
  }
}

// A piece the client did not take within tcpTimeout (the stream is reset) or before the
// stream closed.
boost::system::error_code Http2Stream::give_up_piece() {
  outbound_ = {};
  if (closed_) return asio::error::connection_reset;
  nghttp2_submit_rst_stream(connection_.session(), NGHTTP2_FLAG_NONE, id_, NGHTTP2_CANCEL);
  connection_.want_write();
  return asio::error::timed_out;
}

asio::awaitable<BodyRelay> Http2Stream::relay_request_body(BodySink& sink) {
  BodyRelay result;
  for (;;) {
    while (inbound_.empty() && !request_ended_ && !closed_ && !stop_request_body_) {
      if (!co_await wait_for_progress()) {
        result.read_error = asio::error::timed_out;
        co_return result;
      }
    }
    if (stop_request_body_) {
      result.read_error = asio::error::operation_aborted;
      co_return result;
    }
    if (inbound_.empty() && !request_ended_) {
      result.read_error = asio::error::connection_reset;  // the client reset the stream
      co_return result;
    }
    const bool last = request_ended_;
    forwarding_.swap(inbound_);
    inbound_.clear();
    const auto size = forwarding_.size();
    result.body_started = result.body_started || size > 0;
    if (last && !request_trailers_.empty()) sink.trailers(request_trailers_);
    result.write_error = co_await sink.take(forwarding_.data(), size, last);
    consume(size);  // taken from the client, sent or not: the window reopens
    if (result.write_error) co_return result;
    result.bytes_written += size;
    if (last) co_return result;
  }
}

void Http2Stream::stop_request_body() {
  stop_request_body_ = true;
  wake();
}

asio::awaitable<WriteResult> Http2Stream::send_body_piece(const char* data, std::size_t size,
                                                          bool last) {
  if (closed_) co_return WriteResult{asio::error::connection_reset, 0};
  const auto header_bytes = header_submitted_ ? 0 : fields_.bytes();
  if (size == 0 && !last && header_submitted_) co_return WriteResult{};
  if (hand_over({data, size}, last) != 0) co_return WriteResult{asio::error::connection_reset, 0};
  // (The waits are written out in each coroutine: see hand_over().)
  while (!outbound_.empty() && !closed_) {
    if (!co_await wait_for_progress()) co_return WriteResult{give_up_piece(), 0};
  }
  if (!outbound_.empty()) co_return WriteResult{give_up_piece(), 0};
  co_return WriteResult{{}, size + header_bytes};
}

int Http2Stream::end_with_trailers(const FieldList& trailers) {
  if (!header_submitted_) {
    if (const int status = submit_header(false); status != 0) return status;
  }
  // nghttp2 copied the header: fields_ now holds the trailers until the data source ends.
  fields_.clear();
  for (const auto& [name, value] : trailers) {
    if (http::forwardable_trailer(name, value)) fields_.add(name, value);
  }
  trailers_pending_ = !fields_.empty();  // none left: END_STREAM on the last DATA frame
  return 0;
}

asio::awaitable<WriteResult> Http2Stream::send_trailers(const FieldList& trailers) {
  if (closed_) co_return WriteResult{asio::error::connection_reset, 0};
  const auto header_bytes = header_submitted_ ? 0 : fields_.bytes();
  if (end_with_trailers(trailers) != 0) co_return WriteResult{asio::error::connection_reset, 0};
  const auto bytes = header_bytes + fields_.bytes();
  if (hand_over({}, true) != 0) co_return WriteResult{asio::error::connection_reset, 0};
  while (!response_complete_ && !closed_) {
    if (!co_await wait_for_progress()) co_return WriteResult{asio::error::timed_out, 0};
  }
  co_return WriteResult{
      response_complete_ ? boost::system::error_code{} : asio::error::connection_reset, bytes};
}

}  // namespace hipache::proxy
