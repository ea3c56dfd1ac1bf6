// A connection that is either plain TCP or TLS over TCP, for code that serves both alike.
// Async operations go through visit(), which hands the concrete Beast stream to a callable;
// deadlines and socket options go to the TCP layer underneath (DeadlineStream).
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <chrono>
#include <utility>
#include <variant>

#include "net/deadline_stream.hpp"

namespace hipache::net {

namespace ssl = boost::asio::ssl;
using TcpStream = DeadlineStream;
using TlsStream = boost::beast::ssl_stream<TcpStream>;

class AnyStream {
 public:
  explicit AnyStream(TcpStream stream)
      : stream_(std::in_place_type<TcpStream>, std::move(stream)) {}
  AnyStream(TcpStream stream, boost::asio::ssl::context& tls)
      : stream_(std::in_place_type<TlsStream>, std::move(stream), tls) {}

  bool is_tls() const { return std::holds_alternative<TlsStream>(stream_); }
  TcpStream& tcp() {
    return std::visit([](auto& s) -> TcpStream& { return boost::beast::get_lowest_layer(s); },
                      stream_);
  }
  boost::asio::ip::tcp::socket& socket() { return tcp().socket(); }
  TlsStream* tls() { return std::get_if<TlsStream>(&stream_); }
  // The concrete stream, TcpStream or TlsStream (which one: is_tls()).
  template <class Stream>
  Stream& get() {
    return std::get<Stream>(stream_);
  }

  template <class F>
  decltype(auto) visit(F&& f) {
    return std::visit(std::forward<F>(f), stream_);
  }

  // Visits this stream and `other` together: f(this_stream, other_stream).
  template <class F>
  decltype(auto) visit_with(AnyStream& other, F&& f) {
    return std::visit(std::forward<F>(f), stream_, other.stream_);
  }

 private:
  std::variant<TcpStream, TlsStream> stream_;
};

// tcpTimeout for the next operations on `stream`; 0 means none.
inline void set_deadline(TcpStream& stream, std::chrono::seconds timeout) {
  if (timeout.count() > 0) {
    stream.expires_after(timeout);
  } else {
    stream.expires_never();
  }
}

inline void set_deadline(AnyStream& stream, std::chrono::seconds timeout) {
  set_deadline(stream.tcp(), timeout);
}

}  // namespace hipache::net
