// A send that never waits, for the small messages of the request path (a backend request's
// header, a batch of HTTP/2 frames): what the socket takes at once goes without an asynchronous
// operation, whose completion would cost the worker a scheduler round trip (and, with other
// handlers queued, an epoll poll). Callers write what is left asynchronously.
#pragma once

#include <sys/socket.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>
#include <cerrno>
#include <cstddef>

namespace hipache::net {

// The bytes of `data` the socket took (0 when it would block); `ec` set on a real failure.
inline std::size_t send_now(boost::asio::ip::tcp::socket& socket, boost::asio::const_buffer data,
                            boost::system::error_code& ec) {
  ec.clear();
  const auto sent =
      ::send(socket.native_handle(), data.data(), data.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  if (sent >= 0) return static_cast<std::size_t>(sent);
  if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    ec.assign(errno, boost::system::system_category());
  }
  return 0;
}

}  // namespace hipache::net
