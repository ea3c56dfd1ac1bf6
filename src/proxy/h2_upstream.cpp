// The client session to an HTTP/2 backend: nghttp2 with our limits, the read and write
// coroutines, the callbacks that collect the answer, and the request body's data source.
#include "proxy/h2_upstream.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <cassert>
#include <charconv>

#include "http/fields.hpp"
#include "http/h2_fields.hpp"
#include "http/message.hpp"

namespace hipache::proxy {

namespace {

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kWriteBatch = 64 * 1024;

struct CallbacksDeleter {
  void operator()(nghttp2_session_callbacks* callbacks) const {
    nghttp2_session_callbacks_del(callbacks);
  }
};
struct OptionDeleter {
  void operator()(nghttp2_option* option) const { nghttp2_option_del(option); }
};

ssize_t read_request_body(nghttp2_session*, std::int32_t, std::uint8_t* out, std::size_t length,
                          std::uint32_t* flags, nghttp2_data_source* source, void*) {
  return static_cast<H2Upstream*>(source->ptr)->read_request_body(out, length, flags);
}

}  // namespace

H2Upstream::H2Upstream(std::unique_ptr<UpstreamConnection> connection, std::chrono::seconds timeout)
    : connection_(std::move(connection)),
      timeout_(timeout),
      write_wakeup_(connection_->stream.socket().get_executor()) {
  nghttp2_session_callbacks* raw_callbacks = nullptr;
  nghttp2_session_callbacks_new(&raw_callbacks);
  std::unique_ptr<nghttp2_session_callbacks, CallbacksDeleter> callbacks(raw_callbacks);
  nghttp2_session_callbacks_set_on_header_callback(callbacks.get(), &on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks.get(), &on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks.get(), &on_data_chunk_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks.get(), &on_stream_close);

  nghttp2_option* raw_option = nullptr;
  nghttp2_option_new(&raw_option);
  std::unique_ptr<nghttp2_option, OptionDeleter> option(raw_option);
  // The answer's window opens as the client takes the bytes (passed_on), not as they arrive.
  nghttp2_option_set_no_auto_window_update(option.get(), 1);
  nghttp2_option_set_max_continuations(option.get(), 8);
  nghttp2_option_set_max_settings(option.get(), 32);
  nghttp2_option_set_max_outbound_ack(option.get(), 100);

  nghttp2_session* raw_session = nullptr;
  nghttp2_session_client_new2(&raw_session, callbacks.get(), this, option.get());
  session_.reset(raw_session);
}

H2Upstream::~H2Upstream() = default;

bool H2Upstream::start(std::span<const nghttp2_nv> fields, bool has_body) {
  assert(!closed_ && waiters_.empty());
  stream_ = Stream{};
  body_copy_ = nullptr;
  body_copy_whole_ = false;
  if (!started_) {
    const std::array<nghttp2_settings_entry, 2> settings{{
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, http::kHeaderLimit},
    }};
    nghttp2_submit_settings(session_.get(), NGHTTP2_FLAG_NONE, settings.data(), settings.size());
  }
  nghttp2_data_provider provider{};
  provider.source.ptr = this;
  provider.read_callback = &proxy::read_request_body;
  stream_.request_ended = !has_body;
  stream_.id = nghttp2_submit_request(session_.get(), nullptr, fields.data(), fields.size(),
                                      has_body ? &provider : nullptr, nullptr);
  if (stream_.id < 0) return false;
  if (started_) {
    want_write();  // the write coroutine waits for frames to send
    return true;
  }
  started_ = true;
  auto executor = connection_->stream.socket().get_executor();
  asio::co_spawn(
      executor, [self = shared_from_this()] { return self->read_loop(); }, asio::detached);
  asio::co_spawn(
      executor, [self = shared_from_this()] { return self->write_loop(); }, asio::detached);
  return true;
}

bool H2Upstream::reusable() const {
  // Stream ids are odd and at most 2^31 - 1.
  constexpr std::uint32_t kLastStreamId = 0x7fffffff;
  return !closed_ && !down_ && !goaway_ && stream_.ended && stream_.closed_cleanly &&
         !stream_.failed && stream_.unconsumed == 0 &&
         nghttp2_session_want_read(session_.get()) != 0 &&
         nghttp2_session_get_next_stream_id(session_.get()) < kLastStreamId;
}

void H2Upstream::close() {
  if (closed_) return;
  idle_end_ = nullptr;
  fail(asio::error::operation_aborted);  // whatever still waits for the answer stops
  closed_ = true;
  boost::system::error_code ignored;
  connection_->stream.socket().cancel(ignored);
  connection_->stream.tcp().close();
  write_wakeup_.notify();
  changed();
}

void H2Upstream::fail(boost::system::error_code ec) {
  if (!stream_.ended && !stream_.failed) {
    stream_.failed = true;
    stream_.error = ec;
  }
  changed();
}

void H2Upstream::connection_down(boost::system::error_code ec) {
  // A pooled connection that ends before any byte of the answer is not a refusal: the backend
  // may have processed the request. The retry policy sends it again on a fresh connection only
  // if it is replayable (idempotent, no body), as for a stale HTTP/1.1 connection.
  down_ = true;
  fail(ec);
  if (idle_end_) {
    auto on_end = std::move(idle_end_);
    close();
    on_end();  // the pool drops the session
  }
}

void H2Upstream::want_write() {
  write_wanted_ = true;
  write_wakeup_.notify();
}

asio::awaitable<bool> H2Upstream::wait_for_change() {
  asio::steady_timer timer(connection_->stream.socket().get_executor(),
                           timeout_.count() > 0 ? asio::steady_timer::clock_type::now() + timeout_
                                                : asio::steady_timer::time_point::max());
  waiters_.push_back(&timer);
  auto [ec] = co_await timer.async_wait(kUseTuple);
  std::erase(waiters_, &timer);
  co_return ec == asio::error::operation_aborted;
}

void H2Upstream::passed_on(std::size_t size) {
  if (size == 0 || closed_) return;
  stream_.unconsumed -= std::min<std::uint64_t>(size, stream_.unconsumed);
  nghttp2_session_consume(session_.get(), stream_.id, size);
  want_write();
}

asio::awaitable<void> H2Upstream::read_loop() {
  auto self = shared_from_this();  // the session outlives its callbacks
  while (!closed_) {
    connection_->stream.tcp().expires_never();  // the exchange's waits have the deadlines
    auto [ec, n] = co_await connection_->stream.visit(
        [&](auto& s) { return s.async_read_some(asio::buffer(read_buffer_), kUseTuple); });
    if (closed_) break;
    if (ec) {
      // Closed before its SETTINGS (the server preface): the backend does not speak HTTP/2 (an
      // HTTP/1.1 server answers the preface with a 400 and closes).
      connection_down(settings_received_ ? ec
                                         : make_error_code(boost::beast::http::error::bad_value));
      break;
    }
    stream_.bytes_read += n;
    const auto used = nghttp2_session_mem_recv(session_.get(), read_buffer_.data(), n);
    if (used < 0) {
      spdlog::debug("HTTP/2 backend connection ended: {}",
                    nghttp2_strerror(static_cast<int>(used)));
      connection_down(make_error_code(boost::beast::http::error::bad_value));
      break;
    }
    // The session ended on bytes that broke the protocol (GOAWAY queued): before the close
    // that follows, the failure is the backend's answer, not its close.
    if (nghttp2_session_want_read(session_.get()) == 0) {
      connection_down(make_error_code(boost::beast::http::error::bad_value));
    } else if (goaway_ && idle_end_) {
      connection_down(asio::error::connection_reset);  // a pooled one is dropped at once
    }
    want_write();
  }
  want_write();
}

asio::awaitable<void> H2Upstream::write_loop() {
  auto self = shared_from_this();
  while (!closed_) {
    write_buffer_.clear();
    while (write_buffer_.size() < kWriteBatch) {
      const std::uint8_t* data = nullptr;
      const auto n = nghttp2_session_mem_send(session_.get(), &data);
      if (n < 0) {
        connection_down(make_error_code(boost::beast::http::error::bad_value));
        co_return;
      }
      if (n == 0) break;
      write_buffer_.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
    }
    if (!write_buffer_.empty()) {
      net::set_deadline(connection_->stream, timeout_);
      auto [ec, n] = co_await connection_->stream.visit(
          [&](auto& s) { return asio::async_write(s, asio::buffer(write_buffer_), kUseTuple); });
      if (closed_) co_return;
      if (ec) {
        connection_down(ec);
        co_return;
      }
      connection_->stream.tcp().expires_never();
      changed();  // request body bytes went out: take() may hand over the next piece
      // The session is over (our GOAWAY after bad bytes went out, or theirs with no stream
      // left): a pooled one leaves the pool now rather than at the backend's close.
      if (nghttp2_session_want_read(session_.get()) == 0) {
        connection_down(make_error_code(boost::beast::http::error::bad_value));
        co_return;
      }
      continue;
    }
    if (write_wanted_) {
      write_wanted_ = false;
      continue;
    }
    co_await write_wakeup_.async_wait(kUseTuple);
  }
}

asio::awaitable<boost::system::error_code> H2Upstream::take(const char* data, std::size_t size,
                                                            bool last) {
  auto& stream = stream_;
  assert(stream.outbound.empty() && !stream.request_ended);
  if (body_copy_ != nullptr) {
    // Past the limit (or with trailers) the body cannot be replayed from the copy.
    if (body_copy_->size() + size <= body_copy_limit_ && stream.request_trailers.empty()) {
      body_copy_->append(data, size);
      body_copy_whole_ = last;
    } else {
      body_copy_->clear();
      body_copy_ = nullptr;
    }
  }
  if (stream.failed || closed_ || stream.ended) co_return asio::error::connection_reset;
  stream.outbound = {data, size};
  stream.outbound_last = last;
  nghttp2_session_resume_data(session_.get(), stream.id);
  want_write();
  // The piece is the caller's memory: wait until the data source copied all of it into frames.
  while ((!stream.outbound.empty() || (last && !stream.request_ended)) && !stream.failed &&
         !closed_ && !stream.ended) {
    if (!co_await wait_for_change()) {
      stream.outbound = {};
      co_return asio::error::timed_out;
    }
  }
  const bool taken = stream.outbound.empty();
  stream.outbound = {};
  // An answer that ended before the body was sent: the backend does not want the rest.
  if (!taken) co_return asio::error::connection_reset;
  co_return boost::system::error_code{};
}

void H2Upstream::trailers(const FieldList& fields) {
  stream_.request_trailers = fields;
}

ssize_t H2Upstream::read_request_body(std::uint8_t* out, std::size_t length, std::uint32_t* flags) {
  auto& stream = stream_;
  const auto n = std::min(length, stream.outbound.size());
  std::copy_n(stream.outbound.data(), n, out);
  stream.outbound = stream.outbound.subspan(n);
  if (stream.outbound.empty()) {
    if (stream.outbound_last) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      stream.request_ended = true;
      http::H2FieldBlock block;
      for (const auto& [name, value] : stream.request_trailers) {
        if (http::forwardable_trailer(name, value)) block.add(name, value);
      }
      // None left: END_STREAM on this DATA frame, no empty HEADERS frame after it.
      if (!block.empty()) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        const auto fields = block.list();
        nghttp2_submit_trailer(session_.get(), stream.id, fields.data(), fields.size());
      }
    }
    changed();
    if (n == 0 && !stream.outbound_last) return NGHTTP2_ERR_DEFERRED;
  }
  return static_cast<ssize_t>(n);
}

int H2Upstream::on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                          std::size_t name_length, const std::uint8_t* value,
                          std::size_t value_length, std::uint8_t, void* self) {
  auto& stream = static_cast<H2Upstream*>(self)->stream_;
  if (frame->hd.type != NGHTTP2_HEADERS || frame->hd.stream_id != stream.id) return 0;
  // As for a client's header: a backend cannot make us hold an endless header block.
  stream.block_bytes += name_length + value_length + 32;
  if (stream.block_bytes > http::kHeaderLimit) {
    stream.too_large = true;
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // the stream is reset
  }
  const std::string_view field_name(reinterpret_cast<const char*>(name), name_length);
  const std::string_view field_value(reinterpret_cast<const char*>(value), value_length);
  if (field_name == ":status") {
    unsigned status = 0;
    std::from_chars(field_value.data(), field_value.data() + field_value.size(), status);
    stream.block_status = status;  // nghttp2 checked it is three digits
    return 0;
  }
  stream.block.emplace_back(field_name, field_value);
  return 0;
}

int H2Upstream::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* self) {
  auto& upstream = *static_cast<H2Upstream*>(self);
  if (frame->hd.type == NGHTTP2_SETTINGS) upstream.settings_received_ = true;
  // No new stream goes on this connection (nghttp2 refuses the streams above its last id).
  if (frame->hd.type == NGHTTP2_GOAWAY) upstream.goaway_ = true;
  auto& stream = upstream.stream_;
  if (frame->hd.stream_id != stream.id) return 0;
  const bool ends_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_HEADERS) {
    if (!stream.has_header) {
      // Interim (1xx) answers are dropped: the exchange answered any 100-continue itself.
      if (stream.block_status >= 200) {
        stream.has_header = true;
        stream.status = stream.block_status;
        stream.header = std::move(stream.block);
      }
    } else {
      stream.trailers = std::move(stream.block);
    }
    stream.block.clear();
    stream.block_bytes = 0;
  }
  if (ends_stream && (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA)) {
    stream.ended = stream.has_header;
  }
  upstream.changed();
  return 0;
}

int H2Upstream::on_data_chunk_recv(nghttp2_session*, std::uint8_t, std::int32_t stream_id,
                                   const std::uint8_t* data, std::size_t length, void* self) {
  auto& upstream = *static_cast<H2Upstream*>(self);
  if (stream_id != upstream.stream_.id) return 0;
  upstream.stream_.body.append(reinterpret_cast<const char*>(data), length);
  upstream.stream_.unconsumed += length;
  upstream.changed();
  return 0;
}

int H2Upstream::on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t error_code,
                                void* self) {
  auto& upstream = *static_cast<H2Upstream*>(self);
  auto& stream = upstream.stream_;
  if (stream_id != stream.id) return 0;
  stream.closed_cleanly = stream.ended && error_code == NGHTTP2_NO_ERROR;
  // Closed before the answer ended: a reset (REFUSED_STREAM, CANCEL, a malformed answer).
  if (!stream.ended) {
    spdlog::debug("HTTP/2 backend stream closed: {}", nghttp2_http2_strerror(error_code));
    // Refused (also by a GOAWAY whose last stream id is below it): never processed.
    if (error_code == NGHTTP2_REFUSED_STREAM) stream.refused = true;
    switch (error_code) {
      case NGHTTP2_PROTOCOL_ERROR:
      case NGHTTP2_FRAME_SIZE_ERROR:
      case NGHTTP2_COMPRESSION_ERROR:
      case NGHTTP2_FLOW_CONTROL_ERROR:
        // Frames that break the protocol (either side may have said so): not HTTP/2.
        upstream.fail(make_error_code(boost::beast::http::error::bad_value));
        break;
      default:
        upstream.fail(asio::error::connection_reset);  // refused, cancelled, reset
    }
  }
  upstream.changed();
  return 0;
}

}  // namespace hipache::proxy
