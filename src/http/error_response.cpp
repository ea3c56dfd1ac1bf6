#include "http/error_response.hpp"

#include <boost/beast/http/status.hpp>

namespace hipache::http {

std::string serialize_error_response(const ErrorResponse& response) {
  namespace bhttp = boost::beast::http;
  std::string out;
  out.reserve(256 + response.body.size());
  out += "HTTP/1.1 ";
  out += std::to_string(response.status);
  out += ' ';
  out += bhttp::obsolete_reason(static_cast<bhttp::status>(response.status));
  // Never cached anywhere.
  out +=
      "\r\nContent-Type: text/html\r\nCache-Control: no-cache\r\nPragma: no-cache\r\n"
      "Expires: -1\r\n";
  if (!response.debug_reason.empty()) {
    out += "x-debug-error: ";
    out += response.debug_reason;
    out += "\r\nx-debug-version-hipache: " HIPACHE_VERSION "\r\n";
  }
  if (response.retry_after) out += "Retry-After: 1\r\n";
  if (!response.request_id_field.empty()) {
    out += response.request_id_field;
    out += ": ";
    out += response.request_id;
    out += "\r\n";
  }
  if (!response.keep_alive) {
    out += "Connection: close\r\n";
  } else if (response.http10_client) {
    out += "Connection: keep-alive\r\n";
  }
  out += "Content-Length: ";
  out += std::to_string(response.body.size());
  out += "\r\n\r\n";
  out += response.body;
  return out;
}

}  // namespace hipache::http
