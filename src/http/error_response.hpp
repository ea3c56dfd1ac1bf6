// The one builder of the proxy's own error responses (SPEC section 7): the same headers for
// every error page, whichever part of the request path refuses.
#pragma once

#include <string>
#include <string_view>

namespace hipache::http {

struct ErrorResponse {
  unsigned status = 500;
  std::string_view body;          // the page (proxy/error_pages.hpp)
  bool keep_alive = false;        // else Connection: close
  bool http10_client = false;     // keep-alive must then be said
  std::string_view debug_reason;  // the client sent X-Debug: x-debug-error and our version
  bool retry_after = false;       // Retry-After: 1 (the worker is full)
  // server.requestIdHeader and the request's id; no such field when the name is empty.
  std::string_view request_id_field;
  std::string_view request_id;
};

// Status line, headers and body, ready to send.
std::string serialize_error_response(const ErrorResponse& response);

}  // namespace hipache::http
