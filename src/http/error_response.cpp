#include "http/error_response.hpp"

#include <iterator>

#include "http/ascii.hpp"

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

namespace hipache::http {

void ErrorResponse::make_grpc(std::string_view reason) {
  switch (status) {
    case 400:
      grpc_status = 13;  // INTERNAL
      break;
    case 401:
      grpc_status = 16;  // UNAUTHENTICATED
      break;
    case 403:
      grpc_status = 7;  // PERMISSION_DENIED
      break;
    case 404:
      grpc_status = 12;  // UNIMPLEMENTED
      break;
    case 429:
    case 502:
    case 503:
    case 504:
      grpc_status = 14;  // UNAVAILABLE
      break;
    default:
      grpc_status = 2;  // UNKNOWN
  }
  status = 200;  // a gRPC status travels in a 200 answer (trailers-only)
  grpc_message = reason;
  content_type = "application/grpc";
  body = {};
  no_cache = false;
}

std::string_view ErrorResponse::grpc_code_text() const {
  static constexpr std::string_view kCodes[] = {"0", "1",  "2",  "3",  "4",  "5",  "6",  "7", "8",
                                                "9", "10", "11", "12", "13", "14", "15", "16"};
  return grpc_status < std::size(kCodes) ? kCodes[grpc_status] : "2";
}

bool is_grpc_content_type(std::string_view content_type) {
  constexpr std::string_view kGrpc = "application/grpc";
  if (!starts_with_ignoring_case(content_type, kGrpc)) return false;
  const auto rest = content_type.substr(kGrpc.size());
  return rest.empty() || rest.front() == '+' || rest.front() == ';';
}

}  // namespace hipache::http
