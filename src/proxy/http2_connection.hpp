// One HTTP/2 client connection: h2 chosen by ALPN on a TLS listener, or h2c with prior knowledge
// on a plain one (http1_connection.cpp spots the preface). libnghttp2 does the framing, HPACK,
// stream states and flow control; the I/O is ours: one coroutine reads and feeds the session, one
// writes what the session has to send. Each request stream is served by its own Exchange
// (proxy/http2_stream.hpp); the limits are in docs/security.md.
#pragma once

#include <nghttp2/nghttp2.h>

#include <array>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/unordered/unordered_flat_map.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "net/stream.hpp"
#include "net/tls_records.hpp"
#include "net/wakeup.hpp"
#include "proxy/client_side.hpp"
#include "proxy/proxy_context.hpp"

namespace hipache::proxy {

class Http2Stream;

// The 24 bytes an h2c client with prior knowledge starts with (RFC 9113 section 3.4).
inline constexpr std::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Serves `stream` as HTTP/2 until it closes. `received`: bytes read from it already (for h2c, the
// preface and whatever followed).
boost::asio::awaitable<void> serve_http2(net::AnyStream stream, std::string received,
                                         ProxyContext& ctx, ClientInfo info);

class Http2Connection final : public DrainableSession {
 public:
  // Streams whose exchange runs at once; more are refused (REFUSED_STREAM), also while reset
  // streams' exchanges still finish (rapid reset, CVE-2023-44487).
  static constexpr std::uint32_t kMaxConcurrentStreams = 100;

  Http2Connection(net::AnyStream stream, ProxyContext& ctx, ClientInfo info);
  ~Http2Connection();
  Http2Connection(const Http2Connection&) = delete;
  Http2Connection& operator=(const Http2Connection&) = delete;

  boost::asio::awaitable<void> run(std::string received);

  // A drain: GOAWAY, streams in flight finish, then the connection closes.
  void close_if_idle() override;

  // For the streams.
  nghttp2_session* session() { return session_.get(); }
  ProxyContext& context() { return ctx_; }
  const ClientInfo& info() const { return info_; }
  std::chrono::seconds timeout() const { return timeout_; }
  boost::asio::any_io_executor executor() { return stream_.socket().get_executor(); }
  void want_write();  // the session may have frames to send

 private:
  struct SessionDeleter {
    void operator()(nghttp2_session* session) const { nghttp2_session_del(session); }
  };

  boost::asio::awaitable<void> read_loop();
  boost::asio::awaitable<void> write_loop();
  // tcpTimeout for a connection without streams: one timer, armed again once per period.
  void watch_idle();
  bool idle() const { return streams_.empty() && exchanges_ == 0; }
  boost::asio::awaitable<void> serve_stream(std::shared_ptr<Http2Stream> stream);
  // Feeds bytes read to the session, then starts the exchanges of the requests they completed:
  // false on a connection error.
  bool receive(const std::uint8_t* data, std::size_t size);
  Http2Stream* find(std::int32_t id);  // null for an unknown (or closed) stream
  void forget_found() { found_id_ = -1; }
  // A fresh Sec-WebSocket-Key for a WebSocket request's upgrade (RFC 8441 section 5).
  std::string new_websocket_key();
  // A frame that makes us work without serving a request (PING, SETTINGS, empty DATA, ...):
  // past the budget the client is flooding us, and the connection ends.
  bool spend_control_budget();

  // nghttp2 callbacks (user_data is the connection).
  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                       std::size_t name_length, const std::uint8_t* value, std::size_t value_length,
                       std::uint8_t flags, void* self);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int on_data_chunk_recv(nghttp2_session*, std::uint8_t flags, std::int32_t stream_id,
                                const std::uint8_t* data, std::size_t length, void* self);
  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t error_code,
                             void* self);

  net::AnyStream stream_;
  ProxyContext& ctx_;
  ClientInfo info_;
  std::chrono::seconds timeout_;
  std::unique_ptr<nghttp2_session, SessionDeleter> session_;
  boost::unordered_flat_map<std::int32_t, std::shared_ptr<Http2Stream>> streams_;
  // find()'s last answer: a header block's fields arrive one callback each.
  std::int32_t found_id_ = -1;
  Http2Stream* found_ = nullptr;
  // Requests whose header ended during the current receive(): their exchanges start after it,
  // outside nghttp2's callbacks.
  std::vector<std::shared_ptr<Http2Stream>> new_streams_;
  // The TLS session's records, read and written by the loops below (net/tls_records.hpp); null
  // for h2c, or when the session could not move (then stream_ does the TLS).
  std::unique_ptr<net::TlsRecords> tls_;
  std::string tls_sending_;   // records being written (tls_ gathers the next ones meanwhile)
  net::Wakeup write_wakeup_;  // notified when the session may have frames to send
  boost::asio::steady_timer idle_timer_;
  std::chrono::steady_clock::time_point idle_since_;
  boost::asio::steady_timer exchanges_done_;  // cancelled when the last exchange ends
  std::size_t exchanges_ = 0;                 // running, including those of reset streams
  std::uint64_t control_budget_ = 0;
  bool write_wanted_ = false;
  bool writing_ = false;   // an asynchronous write is under way, with its deadline
  bool stopping_ = false;  // the socket failed or the session is over: no more I/O
  bool going_away_ = false;
  std::array<std::uint8_t, 16 * 1024> read_buffer_{};
  std::string write_buffer_;
};

}  // namespace hipache::proxy
