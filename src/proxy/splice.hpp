// Both directions of an upgraded connection (WebSocket and the like), relayed byte for byte.
//
// Completion handlers rather than coroutines: a tunnel may last hours, and a coroutine per
// direction, joined by awaitable operators, kept ~6 KB of frames per tunnel (two pump frames,
// the parallel groups' frames, one frame per pending operation) for what is two pending reads
// (bench: RSS per WebSocket tunnel). The owner waits on one timer, which the splice cancels when
// both directions are done, and enforces the idle timeout from last_activity().
//
// End of stream is passed on as a half-close (a TCP FIN, also under TLS); an error ends both
// directions. Reads go into a small buffer of the direction; one that fills it means more is
// queued, and reads then go into a borrowed TunnelChunk until one comes back short (the socket
// is drained) and the chunk is returned: a quiet tunnel, or one carrying small messages, holds no
// chunk. A slow reader slows the writer down instead of growing a queue.
#pragma once

#include <array>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "proxy/relay_chunks.hpp"

namespace hipache::proxy {

inline constexpr std::size_t kTunnelInlineBuffer = 512;

template <class ClientStream, class BackendStream>
class Splice {
  using Clock = std::chrono::steady_clock;
  using error_code = boost::system::error_code;

 public:
  // `done`: the timer the owner waits on, cancelled once both directions are done.
  Splice(ClientStream& client, BackendStream& backend, TunnelChunks& chunks,
         boost::asio::steady_timer& done)
      : to_backend_(*this, client, backend, false),
        to_client_(*this, backend, client, true),
        chunks_(chunks),
        done_(done) {}
  Splice(const Splice&) = delete;
  Splice& operator=(const Splice&) = delete;

  void start() {
    to_backend_.read();
    to_client_.read();
  }

  bool finished() const { return to_backend_.done && to_client_.done; }
  Clock::time_point last_activity() const { return last_activity_; }
  std::uint64_t bytes_to_client() const { return bytes_to_client_; }

  // Ends both directions: their pending operations complete with an error.
  void close_both() {
    error_code ignored;
    boost::beast::get_lowest_layer(to_backend_.from).socket().close(ignored);
    boost::beast::get_lowest_layer(to_client_.from).socket().close(ignored);
  }

 private:
  template <class From, class To>
  struct Direction {
    Direction(Splice& s, From& f, To& t, bool client_bound)
        : splice(s), from(f), to(t), towards_client(client_bound) {}

    boost::asio::mutable_buffer buffer() {
      return burst ? boost::asio::buffer(*burst) : boost::asio::buffer(inline_buffer);
    }

    void read() {
      from.async_read_some(buffer(), [this](error_code ec, std::size_t n) { relay(ec, n); });
    }

    // Passes on what the read brought, then acts on how the read ended.
    void relay(error_code read_ec, std::size_t n) {
      if (n == 0) {
        next(read_ec, 0);
        return;
      }
      splice.last_activity_ = Clock::now();
      boost::asio::async_write(to, boost::asio::buffer(buffer(), n),
                               [this, read_ec, n](error_code write_ec, std::size_t written) {
                                 if (towards_client) splice.bytes_to_client_ += written;
                                 splice.last_activity_ = Clock::now();
                                 if (write_ec) {
                                   splice.close_both();
                                   finish();
                                   return;
                                 }
                                 next(read_ec, n);
                               });
    }

    void next(error_code read_ec, std::size_t n) {
      if (n == buffer().size()) {
        if (!burst) burst = splice.chunks_.take();
      } else {
        burst.reset();
      }
      if (read_ec == boost::asio::error::eof ||
          read_ec == boost::asio::ssl::error::stream_truncated) {
        error_code ignored;
        boost::beast::get_lowest_layer(to).socket().shutdown(
            boost::asio::ip::tcp::socket::shutdown_send, ignored);
        finish();
        return;
      }
      if (read_ec) {
        splice.close_both();
        finish();
        return;
      }
      read();
    }

    void finish() {
      done = true;
      burst.reset();
      if (splice.finished()) splice.done_.cancel();
    }

    Splice& splice;
    From& from;
    To& to;
    bool towards_client;
    bool done = false;
    TunnelChunks::Lease burst;
    std::array<char, kTunnelInlineBuffer> inline_buffer;
  };

  Direction<ClientStream, BackendStream> to_backend_;
  Direction<BackendStream, ClientStream> to_client_;
  TunnelChunks& chunks_;
  boost::asio::steady_timer& done_;
  Clock::time_point last_activity_ = Clock::now();
  std::uint64_t bytes_to_client_ = 0;
};

}  // namespace hipache::proxy
