// Connections on a listener with proxyProtocol: the PROXY header (net/proxy_header.hpp) is read
// first, then the connection is served as any other, with the client address the header gave.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "net/stream.hpp"
#include "proxy/proxy_context.hpp"

namespace hipache::proxy {

// Reads the header, then serve_client(). A connection without a valid header within the header
// timeout is closed without an answer: its bytes are never read as HTTP (or TLS).
boost::asio::awaitable<void> serve_proxied_client(boost::asio::ip::tcp::socket socket,
                                                  ProxyContext& ctx, net::ssl::context* tls);

}  // namespace hipache::proxy
