// The accept loop of one listening socket, shared by the workers that inherited it: it waits
// for a pending connection, asks its handler whether to let another worker go first, then takes
// that connection and the ones queued behind it while the handler allows.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>

namespace hipache::net {

class AcceptHandler {
 public:
  // A connection is pending: how long to pause first (zero: take it now).
  virtual std::chrono::microseconds before_accept() = 0;
  virtual void accepted(boost::asio::ip::tcp::socket socket) = 0;
  // After one accepted connection: whether to take the next pending one too.
  virtual bool may_accept_more() = 0;

 protected:
  ~AcceptHandler() = default;
};

// Runs until the acceptor is closed. `acceptor` must be non-blocking. Errors other than an
// empty queue (out of descriptors, memory, ...) are logged and retried after a pause.
boost::asio::awaitable<void> accept_loop(boost::asio::ip::tcp::acceptor& acceptor,
                                         boost::asio::ip::tcp protocol, AcceptHandler& handler);

}  // namespace hipache::net
