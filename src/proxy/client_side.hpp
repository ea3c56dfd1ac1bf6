// What an exchange (proxy/exchange.hpp) needs of the client connection its request came on:
// who the client is, and writing and relaying bytes to and from it. The HTTP/1 connection
// (proxy/http1_connection.cpp) and each HTTP/2 stream (proxy/http2_stream.hpp) implement it, each
// framing the answer its own way.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "http/error_response.hpp"
#include "http/framing.hpp"
#include "http/message.hpp"
#include "http/trailers.hpp"
#include "log/access_log.hpp"
#include "net/stream.hpp"
#include "proxy/relay.hpp"

namespace hipache::proxy {

struct UpstreamConnection;

// Facts about the connection that outlive each of its requests (forwarded fields point here).
struct ClientInfo {
  std::string remote;      // the client's address, as X-Forwarded-For and the log give it
  std::string local_port;  // X-Forwarded-Port
  bool tls = false;        // X-Forwarded-Proto
  bool http2 = false;      // each request is a stream of an HTTP/2 connection
};

// The bytes written, or the error that stopped the write.
struct WriteResult {
  boost::system::error_code error;
  std::size_t bytes = 0;
};

// After a 101 was relayed: what moving the bytes already read on each side to the other did.
struct TunnelStart {
  std::uint64_t to_client = 0;  // bytes written to the client
  bool failed = false;          // a write failed: nothing was handed over, the caller logs
};

// Header or trailer fields of a message: an HTTP/2 one's (names lowercase, no pseudo-headers),
// or a chunked HTTP/1.1 body's trailer section (http/trailers.hpp).
using FieldList = http::FieldList;

// Where a request body goes when the backend is not a byte stream of ours (an HTTP/2 backend):
// take() returns once the piece is on its way and its memory may be reused.
class BodySink {
 public:
  virtual boost::asio::awaitable<boost::system::error_code> take(const char* data, std::size_t size,
                                                                 bool last) = 0;
  // Trailer fields of the request, given before its last piece.
  virtual void trailers(const FieldList& fields) = 0;

 protected:
  ~BodySink() = default;
};

class ClientSide {
 public:
  virtual const ClientInfo& info() const = 0;

  // Whether the request's body (if any) has been read to its end.
  virtual bool request_body_done() const = 0;

  // The answer's header as the exchange made it (hop-by-hop fields removed, ours added), its
  // body framed as `framing` says. Nothing is written yet: the header goes out with the body
  // bytes that follow it (send_response(), relay_response_body()).
  virtual void start_response(http::Response& header, const http::Framing& framing) = 0;
  // Whether a started header has not been written yet (then no byte of the answer reached the
  // client, and cancel_response() lets an error page take its place).
  virtual bool response_unsent() const = 0;
  virtual void cancel_response() = 0;
  // Writes the started header if still unsent, then `body`; `complete`: the answer ends here.
  virtual boost::asio::awaitable<WriteResult> send_response(
      std::span<const boost::asio::const_buffer> body, bool complete) = 0;
  // An answer of the proxy's own (error pages, the ping answer), whole.
  virtual boost::asio::awaitable<WriteResult> send_generated(const http::ErrorResponse& answer) = 0;
  // An interim (1xx) answer the backend sent, hop-by-hop fields removed.
  virtual boost::asio::awaitable<WriteResult> send_interim(http::Response& interim) = 0;
  // "100 Continue": the client waits for it before sending the body it announced.
  virtual boost::asio::awaitable<WriteResult> send_continue() = 0;

  // Streams the rest of the request body to `upstream`, framed as `framing` says.
  virtual boost::asio::awaitable<BodyRelay> relay_request_body(net::AnyStream& upstream,
                                                               http::BodyFraming framing) = 0;

  // Streams the body behind `parser` from `upstream` to the client, framed as `framing` says;
  // a started header still unsent goes out with its first piece (see relay_body()).
  virtual boost::asio::awaitable<BodyRelay> relay_response_body(UpstreamConnection& upstream,
                                                                http::ResponseParser& parser,
                                                                http::BodyFraming framing) = 0;

  // The same for a body that goes to `sink` piece by piece (unframed).
  virtual boost::asio::awaitable<BodyRelay> relay_request_body(BodySink& sink) = 0;
  // The answer ended while that relay still runs (an HTTP/2 backend answered before the whole
  // body arrived): it stops, with a read error, at its next wait for the client.
  virtual void stop_request_body() = 0;

  // One piece of the started answer's body (the header goes first if still unsent), framed as
  // start_response() was told; `last`: the answer ends with it.
  virtual boost::asio::awaitable<WriteResult> send_body_piece(const char* data, std::size_t size,
                                                              bool last) = 0;
  // Ends the started answer with trailer fields: HTTP/2 sends them, HTTP/1.1 after a chunked
  // body; otherwise the answer just ends.
  virtual boost::asio::awaitable<WriteResult> send_trailers(const FieldList& trailers) = 0;

  // After a 101 handshake reached the client: hands both connections to a tunnel, which logs
  // `entry` (its bytes counted on from here) when it closes. The connection then ends.
  virtual boost::asio::awaitable<TunnelStart> start_tunnel(
      std::unique_ptr<UpstreamConnection>& upstream, log::AccessLogEntry entry,
      std::chrono::steady_clock::time_point started,
      std::chrono::steady_clock::time_point backend_started) = 0;

 protected:
  ~ClientSide() = default;
};

}  // namespace hipache::proxy
