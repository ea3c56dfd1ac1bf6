#include "net/listeners.hpp"

#include <unistd.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <stdexcept>

namespace hipache::net {

namespace asio = boost::asio;

std::vector<BoundListener> bind_listeners(const Config& config) {
  // A throwaway io_context: the descriptors outlive it (release() hands them over).
  asio::io_context io;
  std::vector<BoundListener> bound;
  for (const auto& listen : config.listeners) {
    const std::string where =
        (listen.address.find(':') != std::string::npos ? "[" + listen.address + "]"
                                                       : listen.address) +
        ":" + std::to_string(listen.port);
    boost::system::error_code ec;
    const auto address = asio::ip::make_address(listen.address, ec);
    if (ec) {
      close_listeners(bound);
      throw std::runtime_error("cannot listen on " + where + ": invalid address");
    }
    const asio::ip::tcp::endpoint endpoint(address, listen.port);
    asio::ip::tcp::acceptor acceptor(io);
    const auto step = [&](const char* what) {
      if (!ec) return;
      close_listeners(bound);
      throw std::runtime_error("cannot listen on " + where + ": " + what + ": " + ec.message());
    };
    acceptor.open(endpoint.protocol(), ec);
    step("socket");
    acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    step("SO_REUSEADDR");
    if (address.is_v6()) {
      // "::" and "0.0.0.0" can then both be listed on one port, as operators expect.
      acceptor.set_option(asio::ip::v6_only(true), ec);
      step("IPV6_V6ONLY");
    }
    acceptor.bind(endpoint, ec);
    step("bind");
    acceptor.listen(asio::socket_base::max_listen_connections, ec);
    step("listen");
    bound.push_back(BoundListener{acceptor.release(), listen});
  }
  return bound;
}

void close_listeners(std::vector<BoundListener>& listeners) {
  for (auto& listener : listeners) {
    if (listener.fd >= 0) ::close(listener.fd);
    listener.fd = -1;
  }
  listeners.clear();
}

}  // namespace hipache::net
