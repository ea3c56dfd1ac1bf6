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
  const std::array<nghttp2_settings_entry, 2> settings{{
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, http::kHeaderLimit},
  }};
  nghttp2_submit_settings(session_.get(), NGHTTP2_FLAG_NONE, settings.data(), settings.size());
  nghttp2_data_provider provider{};
  provider.source.ptr = this;
  provider.read_callback = &proxy::read_request_body;
  request_ended_ = !has_body;
  stream_id_ = nghttp2_submit_request(session_.get(), nullptr, fields.data(), fields.size(),
                                      has_body ? &provider : nullptr, nullptr);
  if (stream_id_ < 0) return false;
  auto executor = connection_->stream.socket().get_executor();
  asio::co_spawn(
      executor, [self = shared_from_this()] { return self->read_loop(); }, asio::detached);
  asio::co_spawn(
      executor, [self = shared_from_this()] { return self->write_loop(); }, asio::detached);
  return true;
}

void H2Upstream::close() {
  if (closed_) return;
  fail(asio::error::operation_aborted);  // whatever still waits for the answer stops
  closed_ = true;
  boost::system::error_code ignored;
  connection_->stream.socket().cancel(ignored);
  connection_->stream.tcp().close();
  write_wakeup_.cancel();
  changed();
}

void H2Upstream::fail(boost::system::error_code ec) {
  if (!ended_ && !failed_) {
    failed_ = true;
    error_ = ec;
  }
  changed();
}

void H2Upstream::want_write() {
  write_wanted_ = true;
  write_wakeup_.cancel();
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
  nghttp2_session_consume(session_.get(), stream_id_, size);
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
      fail(settings_received_ ? ec : make_error_code(boost::beast::http::error::bad_value));
      break;
    }
    const auto used = nghttp2_session_mem_recv(session_.get(), read_buffer_.data(), n);
    if (used < 0) {
      spdlog::debug("HTTP/2 backend connection ended: {}",
                    nghttp2_strerror(static_cast<int>(used)));
      fail(make_error_code(boost::beast::http::error::bad_value));
      break;
    }
    // The session ended on bytes that broke the protocol (GOAWAY queued): before the close
    // that follows, the failure is the backend's answer, not its close.
    if (nghttp2_session_want_read(session_.get()) == 0) {
      fail(make_error_code(boost::beast::http::error::bad_value));
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
        fail(make_error_code(boost::beast::http::error::bad_value));
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
        fail(ec);
        co_return;
      }
      connection_->stream.tcp().expires_never();
      changed();  // request body bytes went out: take() may hand over the next piece
      continue;
    }
    if (write_wanted_) {
      write_wanted_ = false;
      continue;
    }
    write_wakeup_.expires_at(asio::steady_timer::time_point::max());
    co_await write_wakeup_.async_wait(kUseTuple);
  }
}

asio::awaitable<boost::system::error_code> H2Upstream::take(const char* data, std::size_t size,
                                                            bool last) {
  assert(outbound_.empty() && !request_ended_);
  if (failed_ || closed_ || ended_) co_return asio::error::connection_reset;
  outbound_ = {data, size};
  outbound_last_ = last;
  nghttp2_session_resume_data(session_.get(), stream_id_);
  want_write();
  // The piece is the caller's memory: wait until the data source copied all of it into frames.
  while ((!outbound_.empty() || (last && !request_ended_)) && !failed_ && !closed_ && !ended_) {
    if (!co_await wait_for_change()) {
      outbound_ = {};
      co_return asio::error::timed_out;
    }
  }
  const bool taken = outbound_.empty();
  outbound_ = {};
  // An answer that ended before the body was sent: the backend does not want the rest.
  if (!taken) co_return asio::error::connection_reset;
  co_return boost::system::error_code{};
}

void H2Upstream::trailers(const FieldList& fields) {
  request_trailers_ = fields;
}

ssize_t H2Upstream::read_request_body(std::uint8_t* out, std::size_t length, std::uint32_t* flags) {
  const auto n = std::min(length, outbound_.size());
  std::copy_n(outbound_.data(), n, out);
  outbound_ = outbound_.subspan(n);
  if (outbound_.empty()) {
    if (outbound_last_) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      request_ended_ = true;
      if (!request_trailers_.empty()) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        http::H2FieldBlock block;
        for (const auto& [name, value] : request_trailers_) {
          if (http::allowed_in_trailers(name)) block.add(name, value);
        }
        const auto fields = block.list();
        nghttp2_submit_trailer(session_.get(), stream_id_, fields.data(), fields.size());
      }
    }
    changed();
    if (n == 0 && !outbound_last_) return NGHTTP2_ERR_DEFERRED;
  }
  return static_cast<ssize_t>(n);
}

int H2Upstream::on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                          std::size_t name_length, const std::uint8_t* value,
                          std::size_t value_length, std::uint8_t, void* self) {
  auto& upstream = *static_cast<H2Upstream*>(self);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->hd.stream_id != upstream.stream_id_) return 0;
  // As for a client's header: a backend cannot make us hold an endless header block.
  upstream.block_bytes_ += name_length + value_length + 32;
  if (upstream.block_bytes_ > http::kHeaderLimit) {
    upstream.too_large_ = true;
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // the stream is reset
  }
  const std::string_view field_name(reinterpret_cast<const char*>(name), name_length);
  const std::string_view field_value(reinterpret_cast<const char*>(value), value_length);
  if (field_name == ":status") {
    unsigned status = 0;
    std::from_chars(field_value.data(), field_value.data() + field_value.size(), status);
    upstream.block_status_ = status;  // nghttp2 checked it is three digits
    return 0;
  }
  upstream.block_.emplace_back(field_name, field_value);
  return 0;
}

int H2Upstream::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* self) {
  auto& upstream = *static_cast<H2Upstream*>(self);
  if (frame->hd.type == NGHTTP2_SETTINGS) upstream.settings_received_ = true;
  if (frame->hd.stream_id != upstream.stream_id_) return 0;
  const bool ends_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_HEADERS) {
    if (!upstream.has_header_) {
      // Interim (1xx) answers are dropped: the exchange answered any 100-continue itself.
      if (upstream.block_status_ >= 200) {
        upstream.has_header_ = true;
        upstream.status_ = upstream.block_status_;
        upstream.header_ = std::move(upstream.block_);
      }
    } else {
      upstream.trailers_ = std::move(upstream.block_);
    }
    upstream.block_.clear();
    upstream.block_bytes_ = 0;
  }
  if (ends_stream && (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA)) {
    upstream.ended_ = upstream.has_header_;
  }
  upstream.changed();
  return 0;
}

int H2Upstream::on_data_chunk_recv(nghttp2_session*, std::uint8_t, std::int32_t stream_id,
                                   const std::uint8_t* data, std::size_t length, void* self) {
  auto& upstream = *static_cast<H2Upstream*>(self);
  if (stream_id != upstream.stream_id_) return 0;
  upstream.body_.append(reinterpret_cast<const char*>(data), length);
  upstream.changed();
  return 0;
}

int H2Upstream::on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t error_code,
                                void* self) {
  auto& upstream = *static_cast<H2Upstream*>(self);
  if (stream_id != upstream.stream_id_) return 0;
  // Closed before the answer ended: a reset (REFUSED_STREAM, CANCEL, a malformed answer).
  if (!upstream.ended_) {
    spdlog::debug("HTTP/2 backend stream closed: {}", nghttp2_http2_strerror(error_code));
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
