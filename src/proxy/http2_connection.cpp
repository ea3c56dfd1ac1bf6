// The HTTP/2 connection: the nghttp2 session with our limits, the read and write coroutines,
// and the callbacks that turn frames into streams and stream events.
#include "proxy/http2_connection.hpp"

#include <spdlog/spdlog.h>

#include <tuple>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "hipache/errors.hpp"
#include "http/ascii.hpp"
#include "http/read.hpp"
#include "net/send_now.hpp"
#include "net/tls_records.hpp"
#include "proxy/http2_stream.hpp"
#include "proxy/recycled_blocks.hpp"

namespace hipache::proxy {

namespace {

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
// The connection's receive window: all request bodies of its streams buffered at once stay
// within it (each stream's own window is the default 64 KB).
constexpr std::int32_t kConnectionWindow = 1 << 20;
// Control frames (PING, SETTINGS, PRIORITY, RST_STREAM, empty DATA) allowed at
// the start, and per request stream served: a client that sends more is flooding.
constexpr std::uint64_t kControlBudget = 1000;
constexpr std::uint64_t kControlBudgetPerStream = 20;
// Frames gathered into one write.
constexpr std::size_t kWriteBatch = 64 * 1024;

struct OptionDeleter {
  void operator()(nghttp2_option* option) const { nghttp2_option_del(option); }
};
struct CallbacksDeleter {
  void operator()(nghttp2_session_callbacks* callbacks) const {
    nghttp2_session_callbacks_del(callbacks);
  }
};

}  // namespace

asio::awaitable<void> serve_http2(net::AnyStream stream, std::string received, ProxyContext& ctx,
                                  ClientInfo info) {
  Http2Connection connection(std::move(stream), ctx, std::move(info));
  co_await connection.run(std::move(received));
}

Http2Connection::Http2Connection(net::AnyStream stream, ProxyContext& ctx, ClientInfo info)
    : stream_(std::move(stream)),
      ctx_(ctx),
      info_(std::move(info)),
      timeout_(ctx.config.server.tcp_timeout_s),
      write_wakeup_(stream_.socket().get_executor()),
      idle_timer_(stream_.socket().get_executor()),
      exchanges_done_(stream_.socket().get_executor()) {
  info_.http2 = true;
  ctx_.sessions.insert(this);

  nghttp2_session_callbacks* raw_callbacks = nullptr;
  nghttp2_session_callbacks_new(&raw_callbacks);
  std::unique_ptr<nghttp2_session_callbacks, CallbacksDeleter> callbacks(raw_callbacks);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks.get(), &on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(callbacks.get(), &on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks.get(), &on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks.get(), &on_data_chunk_recv);
  nghttp2_session_callbacks_set_on_frame_send_callback(callbacks.get(), &on_frame_send);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks.get(), &on_stream_close);

  nghttp2_option* raw_option = nullptr;
  nghttp2_option_new(&raw_option);
  std::unique_ptr<nghttp2_option, OptionDeleter> option(raw_option);
  // Windows open as the backend takes the bytes, not as they arrive: memory stays bounded.
  nghttp2_option_set_no_auto_window_update(option.get(), 1);
  nghttp2_option_set_max_continuations(option.get(), 8);   // CONTINUATION flood
  nghttp2_option_set_max_settings(option.get(), 32);       // entries in one SETTINGS frame
  nghttp2_option_set_max_outbound_ack(option.get(), 100);  // PING/SETTINGS acks queued
  nghttp2_option_set_stream_reset_rate_limit(option.get(), 200, 50);  // rapid reset

  nghttp2_session* raw_session = nullptr;
  nghttp2_session_server_new2(&raw_session, callbacks.get(), this, option.get());
  session_.reset(raw_session);

  // ENABLE_CONNECT_PROTOCOL: WebSocket over HTTP/2 (RFC 8441); nghttp2 accepts :protocol only
  // once it is sent.
  const std::array<nghttp2_settings_entry, 4> settings{{
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, kMaxConcurrentStreams},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, http::kHeaderLimit},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1},
  }};
  nghttp2_submit_settings(session(), NGHTTP2_FLAG_NONE, settings.data(), settings.size());
  nghttp2_session_set_local_window_size(session(), NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  control_budget_ = kControlBudget;
}

Http2Connection::~Http2Connection() {
  ctx_.sessions.erase(this);
}

asio::awaitable<void> Http2Connection::run(std::string received) {
  if (auto* tls = stream_.tls()) tls_ = net::TlsRecords::take_over(*tls, received);
  if (!received.empty() &&
      !receive(reinterpret_cast<const std::uint8_t*>(received.data()), received.size())) {
    stopping_ = true;
  }
  if (ctx_.draining) close_if_idle();
  using namespace asio::experimental::awaitable_operators;
  idle_since_ = net::detail::coarse_now();
  if (timeout_.count() > 0) watch_idle();
  co_await (read_loop() && write_loop());
  if (idle_timer_.cancel() == 0 && timeout_.count() > 0) {
    // Its handler may be queued already, and would find this connection gone: let it run first
    // (the queue is first in, first out; it finds stopping_ set and does nothing).
    co_await asio::post(stream_.socket().get_executor(), asio::use_awaitable);
  }

  // No more frames either way: every stream is over for the client; exchanges still waiting on
  // a backend end as soon as they try to answer.
  for (auto& [id, stream] : streams_) stream->on_close();
  streams_.clear();
  forget_found();
  boost::system::error_code ignored;
  stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  stream_.tcp().close();
  while (exchanges_ > 0) {
    exchanges_done_.expires_at(asio::steady_timer::time_point::max());
    co_await exchanges_done_.async_wait(kUseTuple);
  }
}

void Http2Connection::close_if_idle() {
  if (going_away_ || stopping_) return;
  going_away_ = true;
  // Streams the client opened up to now are served; it sends newer ones on another connection.
  nghttp2_submit_goaway(session(), NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session()), NGHTTP2_NO_ERROR,
                        nullptr, 0);
  want_write();
}

void Http2Connection::want_write() {
  write_wanted_ = true;
  write_wakeup_.notify();
}

void Http2Connection::watch_idle() {
  const auto now = net::detail::coarse_now();
  if (idle()) {
    if (now - idle_since_ >= timeout_) {
      // Idle for tcpTimeout: a GOAWAY, and the writer ends the connection.
      nghttp2_session_terminate_session(session(), NGHTTP2_NO_ERROR);
      want_write();
      return;
    }
    idle_timer_.expires_at(idle_since_ + timeout_);
  } else {
    idle_timer_.expires_at(now + timeout_);  // a stream's end sets idle_since_ for the next look
  }
  idle_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec && !stopping_) watch_idle();  // (cancelled: this connection may be gone)
  });
}

asio::awaitable<void> Http2Connection::read_loop() {
  // Reads until the socket fails or the writer ends the connection: even after a GOAWAY, the
  // client's WINDOW_UPDATEs let the answers in flight go out.
  while (!stopping_) {
    // No deadline here: a timeout would close the socket before the GOAWAY could go out. The
    // writer ends an idle connection; streams have deadlines of their own. (A write under way
    // keeps its deadline: a client that stops reading cannot hold it by sending frames.)
    if (!writing_) stream_.tcp().expires_never();
    if (tls_ != nullptr) {
      const auto space = tls_->read_buffer();
      if (space.size() == 0) break;  // a full buffer OpenSSL would not take: not TLS as we know it
      auto [ec, got] = co_await stream_.tcp().async_read_some(space, kUseTuple);
      if (ec) break;
      tls_->given(got);
      // Every record given, decrypted and received (then OpenSSL wants the next ciphertext).
      auto read = tls_->read(read_buffer_.data(), read_buffer_.size());
      while (read.state == net::TlsReadState::data && receive(read_buffer_.data(), read.size)) {
        read = tls_->read(read_buffer_.data(), read_buffer_.size());
      }
      if (read.state != net::TlsReadState::want_read) break;
    } else {
      auto [ec, n] = co_await stream_.visit(
          [&](auto& s) { return s.async_read_some(asio::buffer(read_buffer_), kUseTuple); });
      if (ec || !receive(read_buffer_.data(), n)) break;
    }
    // The writer sleeps until there are frames to send, or the session's end to notice.
    if (nghttp2_session_want_write(session()) != 0 || nghttp2_session_want_read(session()) == 0 ||
        (tls_ != nullptr && !tls_->pending_output().empty())) {
      want_write();
    }
  }
  // The writer sends what is queued (a GOAWAY, answers) and stops.
  stopping_ = true;
  want_write();
}

asio::awaitable<void> Http2Connection::write_loop() {
  for (;;) {
    write_wanted_ = false;  // what was submitted up to now goes in this batch
    write_buffer_.clear();
    bool drained = false;  // the session had nothing more to send
    while (write_buffer_.size() < kWriteBatch) {
      const std::uint8_t* data = nullptr;
      const auto n = nghttp2_session_mem_send(session(), &data);
      if (n <= 0) {
        drained = true;
        break;
      }
      write_buffer_.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
    }
    if (tls_ != nullptr) {
      // Encrypted, the frames are records; a read may have left some too (a key update).
      if (!write_buffer_.empty() && !tls_->write(write_buffer_.data(), write_buffer_.size())) {
        break;
      }
      tls_sending_.clear();
      tls_sending_.swap(tls_->pending_output());
    }
    if (tls_ != nullptr ? !tls_sending_.empty() : !write_buffer_.empty()) {
      boost::system::error_code ec;
      bool waited = true;  // other coroutines ran meanwhile, and may have submitted frames
      if (tls_ != nullptr || !stream_.is_tls()) {
        const std::string& out = tls_ != nullptr ? tls_sending_ : write_buffer_;
        const auto sent = net::send_now(stream_.socket(), asio::buffer(out), ec);
        waited = !ec && sent < out.size();
        if (waited) {
          net::set_deadline(stream_, timeout_);
          writing_ = true;
          std::tie(ec, std::ignore) = co_await asio::async_write(
              stream_.tcp(), asio::buffer(out.data() + sent, out.size() - sent), kUseTuple);
          writing_ = false;
        }
      } else {
        net::set_deadline(stream_, timeout_);
        writing_ = true;
        std::tie(ec, std::ignore) = co_await stream_.visit(
            [&](auto& s) { return asio::async_write(s, asio::buffer(write_buffer_), kUseTuple); });
        writing_ = false;
      }
      if (ec) break;
      if (waited) {
        stream_.tcp().expires_never();  // the deadline was the write's, not the pending read's
        continue;
      }
      if (!drained) continue;
      // Sent at once, and the session had nothing more: no need to ask it again.
    }
    // Nothing to send: done when reading stopped, or the session wants no more frames (after
    // our drain's GOAWAY, once every exchange answered).
    if (stopping_ || (!nghttp2_session_want_read(session()) && (!going_away_ || exchanges_ == 0))) {
      break;
    }
    if (write_wanted_) {
      write_wanted_ = false;
      continue;
    }
    if (idle()) idle_since_ = net::detail::coarse_now();  // watch_idle() counts from here
    auto [ec] = co_await write_wakeup_.async_wait(kUseTuple);
    if (ec) break;
  }
  stopping_ = true;
  boost::system::error_code ignored;
  stream_.socket().cancel(ignored);  // the read loop ends too
}

bool Http2Connection::receive(const std::uint8_t* data, std::size_t size) {
  const auto used = nghttp2_session_mem_recv(session(), data, size);
  for (auto& stream : new_streams_) {
    asio::co_spawn(stream_.socket().get_executor(), serve_stream(std::move(stream)),
                   log_connection_exception);
  }
  new_streams_.clear();
  if (used < 0) {
    // A connection error: nghttp2 queued a GOAWAY when the protocol allows one.
    spdlog::debug("HTTP/2 connection from {} ended: {}", info_.remote,
                  nghttp2_strerror(static_cast<int>(used)));
    return false;
  }
  return true;
}

// Runs from receive(), counted in exchanges_ since its header ended.
asio::awaitable<void> Http2Connection::serve_stream(std::shared_ptr<Http2Stream> stream) {
  // A key only for what may become a WebSocket upgrade (the builder checks the rest).
  const bool websocket = http::iequals(stream->builder().protocol(), "websocket");
  switch (stream->builder().finish(websocket ? new_websocket_key() : std::string())) {
    case http::H2RequestError::none: {
      Exchange exchange(ctx_, *stream, stream->scratch());
      if (stream->builder().websocket()) {
        // An upgrade without a body: the stream's DATA frames are the tunnel's.
        stream->on_websocket_request();
        co_await exchange.serve({stream->request(), true, true, http::ParsedFraming{}});
      } else {
        co_await exchange.serve({stream->request(), true, false,
                                 http::ParsedFraming{false, std::nullopt, !stream->bodiless()}});
      }
      break;
    }
    case http::H2RequestError::too_large:
      co_await stream->refuse(Failure::headers_too_large);
      break;
    case http::H2RequestError::missing_fields:
    case http::H2RequestError::connect:
    case http::H2RequestError::websocket_body:
      co_await stream->refuse(Failure::bad_request);
      break;
  }
  stream->finish_exchange();
  want_write();
  if (--exchanges_ == 0 && stopping_) exchanges_done_.cancel();  // run() waits for them
}

// A nonce, not a secret (RFC 6455 section 10.3 wants it unpredictable to the client): the
// worker's generator, seeded from the kernel, does.
std::string Http2Connection::new_websocket_key() {
  std::array<std::uint8_t, 16> nonce{};
  for (std::size_t i = 0; i < nonce.size(); i += 4) {
    const auto bits = ctx_.rng();
    for (std::size_t j = 0; j < 4; ++j) nonce[i + j] = static_cast<std::uint8_t>(bits >> (8 * j));
  }
  return http::websocket_key(nonce);
}

Http2Stream* Http2Connection::find(std::int32_t id) {
  if (id == found_id_) return found_;
  const auto found = streams_.find(id);
  found_id_ = id;
  found_ = found == streams_.end() ? nullptr : found->second.get();
  return found_;
}

bool Http2Connection::spend_control_budget() {
  if (control_budget_ > 0) {
    --control_budget_;
    return true;
  }
  spdlog::warn("HTTP/2 client {} sends too many control frames: connection closed", info_.remote);
  nghttp2_session_terminate_session(session(), NGHTTP2_ENHANCE_YOUR_CALM);
  return false;
}

int Http2Connection::on_begin_headers(nghttp2_session* session, const nghttp2_frame* frame,
                                      void* self) {
  auto& connection = *static_cast<Http2Connection*>(self);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  const auto id = frame->hd.stream_id;
  if (connection.exchanges_ >= kMaxConcurrentStreams || connection.going_away_) {
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  connection.streams_.emplace(
      id, std::allocate_shared<Http2Stream>(RecycledBlocks<Http2Stream>(), connection, id));
  connection.forget_found();
  return 0;
}

int Http2Connection::on_header(nghttp2_session*, const nghttp2_frame* frame,
                               const std::uint8_t* name, std::size_t name_length,
                               const std::uint8_t* value, std::size_t value_length, std::uint8_t,
                               void* self) {
  auto& connection = *static_cast<Http2Connection*>(self);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
    // Trailers of a request body (an HTTP/2 backend gets them, an HTTP/1.1 one in our last-chunk
    // when the body goes to it chunked).
    auto* stream = connection.find(frame->hd.stream_id);
    if (stream != nullptr &&
        !stream->on_trailer({reinterpret_cast<const char*>(name), name_length},
                            {reinterpret_cast<const char*>(value), value_length})) {
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // too many: the stream is reset
    }
    return 0;
  }
  if (auto* stream = connection.find(frame->hd.stream_id)) {
    stream->builder().add({reinterpret_cast<const char*>(name), name_length},
                          {reinterpret_cast<const char*>(value), value_length});
  }
  return 0;
}

int Http2Connection::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* self) {
  auto& connection = *static_cast<Http2Connection*>(self);
  auto* stream = connection.find(frame->hd.stream_id);
  const bool ends_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
      if (stream == nullptr) return 0;
      if (ends_stream) stream->on_request_end();
      if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        if (ends_stream) stream->on_bodiless_header();
        connection.control_budget_ += kControlBudgetPerStream;
        ++connection.exchanges_;  // now: the next header in this read counts it
        connection.new_streams_.push_back(connection.streams_.at(frame->hd.stream_id));
      }
      return 0;
    case NGHTTP2_DATA:
      if (frame->hd.length == 0 && !ends_stream && !connection.spend_control_budget()) return 0;
      if (stream != nullptr && ends_stream) stream->on_request_end();
      return 0;
    case NGHTTP2_PING:
    case NGHTTP2_SETTINGS:
    case NGHTTP2_PRIORITY:
    case NGHTTP2_RST_STREAM:
      connection.spend_control_budget();
      return 0;
    default:
      return 0;
  }
}

int Http2Connection::on_data_chunk_recv(nghttp2_session* session, std::uint8_t,
                                        std::int32_t stream_id, const std::uint8_t* data,
                                        std::size_t length, void* self) {
  auto& connection = *static_cast<Http2Connection*>(self);
  if (auto* stream = connection.find(stream_id)) {
    stream->on_data(data, length);
  } else {
    nghttp2_session_consume(session, stream_id, length);  // nobody takes it: the window reopens
  }
  return 0;
}

int Http2Connection::on_frame_send(nghttp2_session* session, const nghttp2_frame* frame,
                                   void* self) {
  auto& connection = *static_cast<Http2Connection*>(self);
  if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) return 0;
  // Answered before the request body ended: the client may stop sending it (RFC 9113 section
  // 8.1). Only now: a reset queued earlier would overtake the answer's DATA frames.
  // (A tunnel's client may still send: its half ends with its own END_STREAM.)
  if (auto* stream = connection.find(frame->hd.stream_id);
      stream && !stream->request_ended() && !stream->tunnelling()) {
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
  }
  return 0;
}

int Http2Connection::on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t,
                                     void* self) {
  auto& connection = *static_cast<Http2Connection*>(self);
  const auto found = connection.streams_.find(stream_id);
  if (found == connection.streams_.end()) return 0;
  found->second->on_close();
  connection.streams_.erase(found);
  connection.forget_found();
  return 0;
}

}  // namespace hipache::proxy
