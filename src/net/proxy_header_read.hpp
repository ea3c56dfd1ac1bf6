// Reads the PROXY protocol header (net/proxy_header.hpp) that starts a connection accepted on a
// listener with proxyProtocol, before anything else reads from it.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <optional>
#include <string_view>

#include "net/proxy_header.hpp"

namespace hipache::net {

struct ProxyHeaderRead {
  bool ok = false;                       // a valid header was read
  std::optional<ProxiedAddress> client;  // nullopt: keep the socket's peer (LOCAL, UNKNOWN)
  std::string_view error = {};           // why not ok, for the log (a static string)
};

// Consumes exactly the header's bytes: whatever follows it (an HTTP request, a TLS ClientHello)
// stays in the socket, unread. Fails on a malformed header, end of stream, or when the whole
// header has not arrived within `timeout`.
boost::asio::awaitable<ProxyHeaderRead> read_proxy_header(boost::asio::ip::tcp::socket& socket,
                                                          std::chrono::seconds timeout);

}  // namespace hipache::net
