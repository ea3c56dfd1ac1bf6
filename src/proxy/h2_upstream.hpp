// A connection to an HTTP/2 backend (h2c:// or h2:// URLs): an nghttp2 client session carrying
// one stream at a time. One coroutine reads and feeds the session, one writes what it has to
// send; the exchange (proxy/h2_backend_attempt.cpp) waits for the answer's header, body pieces
// and trailers, and feeds the request body through take(). Memory stays bounded: a body piece is
// taken only once the previous one went into frames, and the answer's window opens only as its
// bytes reach the client. After a stream that ended cleanly the session may go to the pool
// (UpstreamPool::keep_h2) and carry the next request's stream.
#pragma once

#include <nghttp2/nghttp2.h>

#include <array>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "net/wakeup.hpp"
#include "proxy/client_side.hpp"
#include "proxy/upstream_pool.hpp"

namespace hipache::proxy {

class H2Upstream final : public std::enable_shared_from_this<H2Upstream>, public BodySink {
 public:
  H2Upstream(std::unique_ptr<UpstreamConnection> connection, std::chrono::seconds timeout);
  ~H2Upstream();
  H2Upstream(const H2Upstream&) = delete;
  H2Upstream& operator=(const H2Upstream&) = delete;

  // Submits the request as a new stream (`has_body`: DATA follows through take()); the first
  // time, also the connection preface, and starts the I/O. False when nghttp2 refused the header.
  bool start(std::span<const nghttp2_nv> fields, bool has_body);
  // Resets the stream and closes the connection: nothing more is read or written.
  void close();
  UpstreamConnection& connection() { return *connection_; }

  // Whether the connection can carry another stream: this one ended cleanly both ways (answer
  // complete and passed on, request sent or the stream closed with NO_ERROR), no GOAWAY came,
  // no I/O or protocol error, stream ids left.
  bool reusable() const;
  // The backend did not process the request (RFC 9113 section 8.7): it refused the stream
  // (REFUSED_STREAM, or a GOAWAY below it).
  bool refused() const { return stream_.refused; }
  // While pooled the session still reads (PING and SETTINGS get their answer); `on_end` runs
  // once if the connection ends meanwhile (a GOAWAY, a close, bad bytes). unpark() forgets it.
  void park(std::function<void()> on_end) { idle_end_ = std::move(on_end); }
  void unpark() { idle_end_ = nullptr; }

  // Keeps a copy of the request body pieces taken, up to `limit` bytes, to replay the body on a
  // fresh connection if the backend refuses the stream. body_copied(): all of it is in `copy`.
  void copy_body_into(std::string& copy, std::size_t limit) {
    body_copy_ = &copy;
    body_copy_limit_ = limit;
  }
  bool body_copied() const { return body_copy_ != nullptr && body_copy_whole_; }

  // Waits until something changes (a header, body bytes, the end, a failure, a piece taken),
  // at most tcpTimeout: false on a timeout.
  boost::asio::awaitable<bool> wait_for_change();

  // The answer, as it arrives.
  bool has_header() const { return stream_.has_header; }
  unsigned status() const { return stream_.status; }
  const FieldList& header() const { return stream_.header; }
  std::string& body() { return stream_.body; }  // received and not yet passed on
  void passed_on(std::size_t size);             // body bytes the client took: the window reopens
  bool ended() const { return stream_.ended; }  // END_STREAM received: body and trailers are all
  const FieldList& trailers() const { return stream_.trailers; }
  // The stream or connection failed before the answer ended (reset, I/O error, bad frames).
  bool failed() const { return stream_.failed; }
  boost::system::error_code error() const { return stream_.error; }
  bool answer_too_large() const { return stream_.too_large; }

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
  // The connection failed or ended (I/O error, close, bad bytes, GOAWAY): a pooled session
  // leaves the pool.
  void connection_down(boost::system::error_code ec);

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
  // One timer per wait_for_change() under way (the answer's relay and the body's take() wait at
  // once): re-arming one shared timer would cancel the other's wait, and they would wake each
  // other in turn for as long as both wait.
  std::vector<boost::asio::steady_timer*> waiters_;
  net::Wakeup write_wakeup_;  // notified when the session may have frames to send
  bool write_wanted_ = false;
  bool closed_ = false;
  bool started_ = false;            // the preface went out, the coroutines run
  bool settings_received_ = false;  // the backend's connection preface came
  bool down_ = false;               // I/O error, close or protocol error: no further stream
  bool goaway_ = false;             // the backend announced the end of the connection
  std::function<void()> idle_end_;  // set while pooled (park)
  std::string* body_copy_ = nullptr;
  std::size_t body_copy_limit_ = 0;
  bool body_copy_whole_ = false;  // the last piece went into the copy

  // The current stream: reset by start().
  struct Stream {
    std::int32_t id = -1;
    // The header block being received, and the answer.
    FieldList block;
    std::size_t block_bytes = 0;
    unsigned block_status = 0;
    bool has_header = false;
    unsigned status = 0;
    FieldList header;
    std::string body;
    FieldList trailers;
    bool ended = false;
    bool failed = false;
    bool too_large = false;
    boost::system::error_code error;
    bool closed_cleanly = false;   // closed both ways with NO_ERROR
    bool refused = false;          // see refused()
    std::uint64_t bytes_read = 0;  // from the backend since the stream began
    std::uint64_t unconsumed = 0;  // answer bytes not passed on (their window is shut)
    // The request body piece the data source hands out next (the caller's memory, until take()
    // returns).
    std::span<const char> outbound{};
    bool outbound_last = false;
    bool request_ended = false;
    FieldList request_trailers;  // sent after the last piece, when there are any
  };
  Stream stream_;

  std::array<std::uint8_t, 16 * 1024> read_buffer_{};
  std::string write_buffer_;
};

}  // namespace hipache::proxy
