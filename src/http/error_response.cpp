#include "http/error_response.hpp"

namespace hipache::http {

std::string serialize_error_response(const ErrorResponse& response) {
  namespace bhttp = boost::beast::http;
  std::string out;
  out.reserve(256 + response.body.size());
  out += "HTTP/1.1 ";
  out += std::to_string(response.status);
  out += ' ';
  out += bhttp::obsolete_reason(static_cast<bhttp::status>(response.status));
  out += "\r\n";
  response.for_each_field([&out](std::string_view name, std::string_view value) {
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  });
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
