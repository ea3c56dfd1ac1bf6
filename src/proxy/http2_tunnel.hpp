// A WebSocket over HTTP/2 (RFC 8441) once the backend answered its upgrade with 101 and the
// client got its 200: the stream's DATA frames go to the backend's connection, the backend's
// bytes come back as DATA frames, until either side ends.
//
// Unlike an HTTP/1 tunnel (proxy/tunnel.hpp) it runs inside its stream's exchange: the stream
// shares its connection with others, so the connection's coroutines go on anyway, and the
// exchange counts against the connection's max concurrent streams while the tunnel is open.
// Memory stays bounded: the client sends at most the stream's window before the backend takes
// the bytes (the window reopens only then), and the backend's bytes move one 16 KB chunk at a
// time, the next read waiting until the client's window took the last.
//
// Ends: the client's END_STREAM half-closes the backend connection (a TCP FIN, also under TLS);
// the backend's EOF ends the stream (END_STREAM). A reset, an error on the backend connection or
// tcpTimeout without a byte either way ends both (the stream is reset, the backend connection
// closed).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>

#include "proxy/relay_chunks.hpp"

namespace hipache::proxy {

class Http2Stream;
struct ProxyContext;
struct UpstreamConnection;

class Http2Tunnel {
 public:
  // The stream's answer header (200) is submitted; `upstream` is the backend connection that
  // answered 101, with any bytes read past that answer still in its buffer.
  Http2Tunnel(Http2Stream& stream, UpstreamConnection& upstream, ProxyContext& ctx);
  Http2Tunnel(const Http2Tunnel&) = delete;
  Http2Tunnel& operator=(const Http2Tunnel&) = delete;
  ~Http2Tunnel();

  // Until both directions are done (or the tunnel failed or idled out).
  boost::asio::awaitable<void> run();

  std::uint64_t bytes_to_client() const { return bytes_to_client_; }

 private:
  using Clock = std::chrono::steady_clock;

  boost::asio::awaitable<void> to_backend();
  boost::asio::awaitable<void> to_client();
  boost::asio::awaitable<void> watch_idleness();
  // Waits until the stream moves (data, window, close) or the tunnel stops.
  boost::asio::awaitable<void> wait_for_stream();
  // Ends both directions at once: the backend connection closes, waits are woken.
  void stop();
  void direction_done();

  Http2Stream& stream_;
  UpstreamConnection& upstream_;
  std::chrono::seconds timeout_;
  TunnelChunks::Lease chunk_;  // the backend's bytes on their way to the client
  boost::asio::steady_timer idle_timer_;
  Clock::time_point last_activity_ = Clock::now();
  std::uint64_t bytes_to_client_ = 0;
  int directions_ = 2;  // still running
  bool stopped_ = false;
};

}  // namespace hipache::proxy
