// The one builder of the proxy's own answers (SPEC section 7): the same headers for every error
// page, whichever part of the request path refuses, and the ping answer. HTTP/1 connections
// send serialize_error_response(); HTTP/2 streams take the same fields from for_each_field().
#pragma once

#include <boost/beast/http/status.hpp>
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
  std::string_view content_type = "text/html";
  bool no_cache = true;  // error pages are never cached anywhere
  // server.requestIdHeader and the request's id; no such field when the name is empty.
  std::string_view request_id_field;
  std::string_view request_id;
  // A gRPC client's answer: 200 with grpc-status and grpc-message and no body (see
  // grpc_error()); 0 for an ordinary page.
  unsigned grpc_status = 0;
  std::string_view grpc_message;

  // The fields but the framing and connection ones, in order: f(name, value).
  template <class F>
  void for_each_field(F&& f) const {
    f("Content-Type", content_type);
    if (no_cache) {
      f("Cache-Control", "no-cache");
      f("Pragma", "no-cache");
      f("Expires", "-1");
    }
    if (!debug_reason.empty()) {
      f("x-debug-error", debug_reason);
      f("x-debug-version-hipache", HIPACHE_VERSION);
    }
    if (retry_after) f("Retry-After", "1");
    if (!request_id_field.empty()) f(request_id_field, request_id);
    if (grpc_status != 0) {
      f("grpc-status", grpc_code_text());
      f("grpc-message", grpc_message);
    }
  }

  // The page as a gRPC client reads it: the status code mapped as gRPC maps HTTP statuses
  // (UNAVAILABLE for 502, 503 and 504, INTERNAL for 400, ...), `reason` as grpc-message.
  void make_grpc(std::string_view reason);

 private:
  std::string_view grpc_code_text() const;
};

// Whether a request's Content-Type is gRPC's ("application/grpc", "application/grpc+proto"...).
bool is_grpc_content_type(std::string_view content_type);

// Status line, headers and body, ready to send.
std::string serialize_error_response(const ErrorResponse& response);

}  // namespace hipache::http
