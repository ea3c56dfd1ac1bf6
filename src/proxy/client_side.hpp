// What an exchange (proxy/exchange.hpp) needs of the client connection its request came on:
// who the client is, and writing and relaying bytes to and from it. The HTTP/1 connection
// (proxy/http1_connection.cpp) implements it; an HTTP/2 stream can drive the same exchange.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "http/framing.hpp"
#include "http/message.hpp"
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

class ClientSide {
 public:
  virtual const ClientInfo& info() const = 0;

  // Whether the request's body (if any) has been read to its end.
  virtual bool request_body_done() const = 0;

  // Writes `pieces` (a serialized header, maybe followed by body bytes) as one send.
  virtual boost::asio::awaitable<WriteResult> send(
      std::span<const boost::asio::const_buffer> pieces) = 0;

  // Streams the rest of the request body to `upstream`, framed as `framing` says.
  virtual boost::asio::awaitable<BodyRelay> relay_request_body(net::AnyStream& upstream,
                                                               http::BodyFraming framing) = 0;

  // Streams the body behind `parser` from `upstream` to the client, framed as `framing` says;
  // `head`, when not empty, goes out with its first piece (see relay_body()).
  virtual boost::asio::awaitable<BodyRelay> relay_response_body(UpstreamConnection& upstream,
                                                                http::ResponseParser& parser,
                                                                std::string& head,
                                                                http::BodyFraming framing) = 0;

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
