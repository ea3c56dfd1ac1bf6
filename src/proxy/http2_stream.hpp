// One stream of an HTTP/2 client connection (proxy/http2_connection.hpp): its request, built
// from the header block, is served by an Exchange like an HTTP/1 request; the answer goes back
// as HEADERS and DATA frames. The request body arrives in DATA frames, bounded by the stream's
// flow-control window, which opens again only as the backend takes the bytes. A WebSocket
// request (RFC 8441) becomes a tunnel after its upgrade (proxy/http2_tunnel.hpp).
#pragma once

#include <nghttp2/nghttp2.h>

#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "hipache/errors.hpp"
#include "http/h2_fields.hpp"
#include "http/h2_request.hpp"
#include "proxy/client_side.hpp"
#include "proxy/exchange.hpp"

namespace hipache::proxy {

class Http2Connection;

class Http2Stream final : public ClientSide {
 public:
  Http2Stream(Http2Connection& connection, std::int32_t id);
  Http2Stream(const Http2Stream&) = delete;
  Http2Stream& operator=(const Http2Stream&) = delete;
  ~Http2Stream() = default;

  std::int32_t id() const { return id_; }
  http::Request& request() { return request_; }
  http::H2RequestBuilder& builder() { return builder_; }
  ExchangeScratch& scratch() { return scratch_; }

  // Events from the connection's nghttp2 callbacks.
  void on_data(const std::uint8_t* data, std::size_t size);
  void on_request_end();  // END_STREAM: the request body is complete
  // A trailer field of the request; false past the header size limit.
  bool on_trailer(std::string_view name, std::string_view value);
  // The header block ended the stream: the request has no body.
  void on_bodiless_header() { bodiless_ = true; }
  bool bodiless() const { return bodiless_; }
  // An RFC 8441 WebSocket request: its DATA frames are the tunnel's, not a request body, and the
  // backend's 101 reaches the client as a 200.
  void on_websocket_request() { websocket_ = true; }
  // Upgraded: its halves end one by one, as a TCP connection's (proxy/http2_tunnel.hpp).
  bool tunnelling() const { return tunnelling_; }
  void on_close();  // closed or reset: nothing more goes to or comes from the client
  bool request_ended() const { return request_ended_; }
  bool response_complete() const { return response_complete_; }
  bool closed() const { return closed_; }
  // A request refused before any exchange (its header block too large or incomplete).
  boost::asio::awaitable<void> refuse(Failure failure);
  // After the exchange: ends the stream as RFC 9113 section 8.1 asks, whatever the exchange left.
  void finish_exchange();
  // nghttp2's data source: copies what is ready into `out`.
  ssize_t read_outbound(std::uint8_t* out, std::size_t length, std::uint32_t* flags);

  // ClientSide
  const ClientInfo& info() const override;
  bool request_body_done() const override {
    return websocket_ || (request_ended_ && inbound_.empty());
  }
  void start_response(http::Response& header, const http::Framing& framing) override;
  bool response_unsent() const override { return header_ready_ && !header_submitted_; }
  void cancel_response() override;
  boost::asio::awaitable<WriteResult> send_response(std::span<const boost::asio::const_buffer> body,
                                                    bool complete) override;
  boost::asio::awaitable<WriteResult> send_generated(const http::ErrorResponse& answer) override;
  boost::asio::awaitable<WriteResult> send_interim(http::Response& interim) override;
  boost::asio::awaitable<WriteResult> send_continue() override;
  boost::asio::awaitable<BodyRelay> relay_request_body(net::AnyStream& upstream,
                                                       http::BodyFraming framing) override;
  boost::asio::awaitable<BodyRelay> relay_response_body(UpstreamConnection& upstream,
                                                        http::ResponseParser& parser,
                                                        http::BodyFraming framing) override;
  boost::asio::awaitable<BodyRelay> relay_request_body(BodySink& sink) override;
  void stop_request_body() override;
  boost::asio::awaitable<WriteResult> send_body_piece(const char* data, std::size_t size,
                                                      bool last) override;
  boost::asio::awaitable<WriteResult> send_trailers(const FieldList& trailers) override;
  boost::asio::awaitable<TunnelStart> start_tunnel(
      std::unique_ptr<UpstreamConnection>& upstream, log::AccessLogEntry entry,
      std::chrono::steady_clock::time_point started,
      std::chrono::steady_clock::time_point backend_started) override;

 private:
  friend class Http2Tunnel;  // moves the stream's DATA both ways once upgraded

  void begin_header(unsigned status);
  void add_message_fields(const http::Response& message);  // but the connection-specific ones
  // Submits the prepared header, with a data source unless the answer ends with it.
  int submit_header(bool ends_stream);
  // The answer ends with these trailer fields (those that may go on; with none, the last DATA
  // frame ends the stream): the header is submitted if it was not, the trailers go out once the
  // data source has handed out the last piece.
  int end_with_trailers(const FieldList& trailers);
  // Hands `data` to the data source (which copies it into DATA frames as the window allows).
  int hand_over(std::span<const char> data, bool last);
  // Waits for on_data/on_close/read_outbound to move, at most tcpTimeout: false on a timeout.
  boost::asio::awaitable<bool> wait_for_progress();
  boost::system::error_code give_up_piece();

  void wake() {
    if (progress_) progress_->cancel();
    for (auto* waiter : progress_waiters_) waiter->cancel();
  }
  void consume(std::size_t size);

  Http2Connection& connection_;
  std::int32_t id_;
  // Declared before the request whose fields it holds, so destroyed after it.
  http::HeaderMemory request_memory_;
  http::Request request_;
  http::H2RequestBuilder builder_{request_};
  ExchangeScratch scratch_;
  // The tunnel's wake-up (proxy/http2_tunnel.cpp), made when the stream becomes one.
  std::optional<boost::asio::steady_timer> progress_;
  // One timer per wait_for_progress() under way (a request body's relay and the answer's wait
  // at once): re-arming one shared timer would cancel the other's wait, and they would wake
  // each other in turn for as long as both wait.
  std::vector<boost::asio::steady_timer*> progress_waiters_;

  std::string inbound_;     // request body bytes received, not yet forwarded
  std::string forwarding_;  // those being written to the backend
  FieldList request_trailers_;
  std::size_t request_trailer_bytes_ = 0;
  bool request_ended_ = false;
  bool bodiless_ = false;
  bool websocket_ = false;
  bool tunnelling_ = false;
  bool closed_ = false;
  bool exchange_done_ = false;

  // The answer's header (then its trailers) until submitted: nghttp2 copies them then.
  http::H2FieldBlock fields_;
  bool header_ready_ = false;
  bool header_submitted_ = false;
  // The data source: bytes handed over and not yet taken into frames.
  std::string body_copy_;             // a small body sent whole with its header
  std::span<const char> outbound_{};  // what the data source hands out next
  bool outbound_last_ = false;        // the answer ends with `outbound_`
  bool response_complete_ = false;    // the data source said end of stream
  bool trailers_pending_ = false;     // the data source ends the body, the trailers (in
                                      // fields_) end the stream
  bool stop_request_body_ = false;
};

}  // namespace hipache::proxy
