// The one mapping from an I/O or parse error on a backend connection to a Failure
// (hipache/errors.hpp), whose classification then decides retry, dead mark and status.
#pragma once

#include <boost/asio/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/system/error_code.hpp>

#include "hipache/errors.hpp"

namespace hipache::proxy {

// Where on the backend connection the error happened.
enum class BackendPhase { connect, tls_handshake, exchange };

// A protocol violation by the peer, as opposed to the connection ending or failing.
inline bool is_parse_error(const boost::system::error_code& ec) {
  namespace http = boost::beast::http;
  static const auto& http_errors = http::make_error_code(http::error::end_of_stream).category();
  return ec && ec.category() == http_errors && ec != http::error::end_of_stream &&
         ec != http::error::partial_message && ec != http::error::need_buffer;
}

inline Failure backend_failure(const boost::system::error_code& ec, BackendPhase phase) {
  if (ec == boost::beast::error::timeout) return Failure::backend_timeout;
  switch (phase) {
    case BackendPhase::connect:
      return Failure::backend_refused;
    case BackendPhase::tls_handshake:
      return Failure::backend_tls_failed;
    case BackendPhase::exchange:
      break;
  }
  if (is_parse_error(ec)) return Failure::backend_bad_response;
  // Closed, reset, aborted, or cut short: the backend went away.
  return Failure::backend_reset;
}

}  // namespace hipache::proxy
