// How a new client connection turns out to speak HTTP/2: ALPN h2 after the TLS handshake, or
// the h2c preface (prior knowledge) on a plain one. The HTTP/1 session that accepted it then
// hands the connection, with what it read already, to serve_http2 (proxy/http2_connection.hpp).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <chrono>
#include <string>

#include "net/stream.hpp"
#include "proxy/client_side.hpp"

namespace hipache::proxy {

// A connection that turned out to speak HTTP/2, and what was read from it.
struct Http2Start {
  net::AnyStream stream;
  std::string received;
  ClientInfo info;
};

// Whether the TLS handshake chose h2 (ALPN).
bool chose_h2(net::TlsStream& tls);

enum class PrefaceRead { http1, http2, cut_short };

// A new plain connection: whether it starts with the HTTP/2 preface (h2c with prior
// knowledge), read within `timeout`. What was read stays in `buffer` either way. cut_short: the
// client closed, or the read failed, before anything but the start of a preface came.
boost::asio::awaitable<PrefaceRead> read_http2_preface(net::AnyStream& client,
                                                       boost::beast::flat_buffer& buffer,
                                                       std::chrono::seconds timeout);

// The connection for serve_http2: `client` moved out, and the bytes of `buffer` (consumed).
Http2Start take_for_http2(net::AnyStream& client, boost::beast::flat_buffer& buffer,
                          const ClientInfo& info);

}  // namespace hipache::proxy
