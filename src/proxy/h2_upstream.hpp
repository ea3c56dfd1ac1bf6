// One request to an HTTP/2 backend (h2c:// or h2:// URLs): an nghttp2 client session on a
// connection of its own, carrying one stream. One coroutine reads and feeds the session, one
// writes what it has to send; the exchange (proxy/h2_backend_attempt.cpp) waits for the answer's
// header, body pieces and trailers, and feeds the request body through take(). Memory stays
// bounded: a body piece is taken only once the previous one went into frames, and the answer's
// window opens only as its bytes reach the client.
#pragma once

#include <nghttp2/nghttp2.h>

#include <array>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "proxy/client_side.hpp"
#include "proxy/upstream_pool.hpp"

namespace hipache::proxy {

class H2Upstream final : public std::enable_shared_from_this<H2Upstream>, public BodySink {
 public:
  H2Upstream(std::unique_ptr<UpstreamConnection> connection, std::chrono::seconds timeout);
  ~H2Upstream();
  H2Upstream(const H2Upstream&) = delete;
  H2Upstream& operator=(const H2Upstream&) = delete;

  // Submits the connection preface and the request (`has_body`: DATA follows through take())
  // and starts the I/O. False when nghttp2 refused the header.
  bool start(std::span<const nghttp2_nv> fields, bool has_body);
  // Resets the stream and closes the connection: nothing more is read or written.
  void close();
  UpstreamConnection& connection() { return *connection_; }

  // Waits until something changes (a header, body bytes, the end, a failure, a piece taken),
  // at most tcpTimeout: false on a timeout.
  boost::asio::awaitable<bool> wait_for_change();

  // The answer, as it arrives.
  bool has_header() const { return has_header_; }
  unsigned status() const { return status_; }
  const FieldList& header() const { return header_; }
  std::string& body() { return body_; }  // received and not yet passed on
  void passed_on(std::size_t size);      // body bytes the client took: the window reopens
  bool ended() const { return ended_; }  // END_STREAM received: body_ and trailers are all
  const FieldList& trailers() const { return trailers_; }
  // The stream or connection failed before the answer ended (reset, I/O error, bad frames).
  bool failed() const { return failed_; }
  boost::system::error_code error() const { return error_; }
  bool answer_too_large() const { return too_large_; }

  // BodySink: the request body, one piece at a time.
  boost::asio::awaitable<boost::system::error_code> take(const char* data, std::size_t size,
                                                         bool last) override;
  void trailers(const FieldList& fields) override;

  // nghttp2's data source for the request body.
  ssize_t read_request_body(std::uint8_t* out, std::size_t length, std::uint32_t* flags);

 private:
  struct SessionDeleter {
    void operator()(nghttp2_session* session) const { nghttp2_session_del(session); }
  };

  boost::asio::awaitable<void> read_loop();
  boost::asio::awaitable<void> write_loop();
  void want_write();
  void changed() {
    for (auto* waiter : waiters_) waiter->cancel();
  }
  void fail(boost::system::error_code ec);

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                       std::size_t name_length, const std::uint8_t* value, std::size_t value_length,
                       std::uint8_t flags, void* self);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int on_data_chunk_recv(nghttp2_session*, std::uint8_t flags, std::int32_t stream_id,
                                const std::uint8_t* data, std::size_t length, void* self);
  static int on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t error_code,
                             void* self);

  std::unique_ptr<UpstreamConnection> connection_;
  std::chrono::seconds timeout_;
  std::unique_ptr<nghttp2_session, SessionDeleter> session_;
  std::int32_t stream_id_ = -1;
  // One timer per wait_for_change() under way (the answer's relay and the body's take() wait at
  // once): re-arming one shared timer would cancel the other's wait, and they would wake each
  // other in turn for as long as both wait.
  std::vector<boost::asio::steady_timer*> waiters_;
  boost::asio::steady_timer write_wakeup_;  // cancelled when the session has frames to send
  bool write_wanted_ = false;
  bool closed_ = false;
  bool settings_received_ = false;  // the backend's connection preface came

  // The header block being received, and the answer.
  FieldList block_;
  std::size_t block_bytes_ = 0;
  unsigned block_status_ = 0;
  bool has_header_ = false;
  unsigned status_ = 0;
  FieldList header_;
  std::string body_;
  FieldList trailers_;
  bool ended_ = false;
  bool failed_ = false;
  bool too_large_ = false;
  boost::system::error_code error_;

  // The request body piece the data source hands out next (the caller's memory, until take()
  // returns).
  std::span<const char> outbound_{};
  bool outbound_last_ = false;
  bool request_ended_ = false;
  FieldList request_trailers_;  // sent after the last piece, when there are any

  std::array<std::uint8_t, 16 * 1024> read_buffer_{};
  std::string write_buffer_;
};

}  // namespace hipache::proxy
