// Every way a request can fail, classified once. The classification alone decides whether the
// request is retried, whether the backend is marked dead, which status the client gets and what
// x-debug-error says (ARCHITECTURE.md, hot-path rules).
#pragma once

#include <string_view>

namespace hipache {

enum class Failure {
  // client side
  bad_request,         // unparsable or ambiguous request (smuggling guards)
  headers_too_large,   // request header block over the limit, or too many fields
  uri_too_long,        // request target over the limit
  overloaded,          // the worker is at server.maxConnections
  missing_host,        // no Host header
  host_too_long,       // a Host name longer than any DNS name
  frontend_not_found,  // no frontend list matched
  // routing
  no_live_backend,    // every backend dead or already tried
  bad_backend_url,    // the picked backend URL cannot be parsed
  store_unavailable,  // Redis could not answer
  // backend side
  backend_refused,           // connect refused / unreachable
  backend_reset,             // connection reset or closed before a complete response header
  backend_timeout,           // connect or response wait exceeded tcpTimeout
  backend_bad_response,      // the backend answered something that is not HTTP
  backend_tls_failed,        // TLS handshake with an https:// backend failed (or its certificate)
  backend_broken_body,       // the backend failed mid-response (client connection is closed)
  backend_stopped_reading,   // the backend stopped taking the request body and never answered
  pool_exhausted,            // waited too long for one of maxSockets connections
  upgrade_to_http2_backend,  // an HTTP/1.1 upgrade (WebSocket) routed to an h2c/h2 backend
};

enum class FailureSource { client, routing, store, backend };

// What another try may do after a failure, when the request can be replayed and the budget
// allows (proxy/retry_policy.hpp).
enum class RetryKind {
  none,       // not retried
  elsewhere,  // on another backend
  // On a connection taken from the pool: once more on a fresh connection to the same backend,
  // without a dead mark, since the backend may only have closed it while idle (Pingora's
  // RetryType::ReusedOnly). On a fresh connection: like `elsewhere`.
  fresh_if_reused,
};

// How far an attempt on a backend got when it failed.
enum class AttemptPhase {
  connecting,      // no byte of the request reached the backend
  request_sent,    // some of the request did, none of the answer reached the client
  answer_started,  // some of the answer reached the client: only a close is left
};

struct FailureClass {
  int status;  // HTTP status for the error page
  FailureSource source;
  bool marks_backend_dead;  // counts as a passive health-check failure
  RetryKind retry;
  std::string_view reason;  // x-debug-error and log text
};

constexpr FailureClass classify(Failure f) {
  switch (f) {
    case Failure::bad_request:
      return {400, FailureSource::client, false, RetryKind::none, "Bad request"};
    case Failure::headers_too_large:
      return {431, FailureSource::client, false, RetryKind::none,
              "Request header fields too large"};
    case Failure::uri_too_long:
      return {414, FailureSource::client, false, RetryKind::none, "Request URI too long"};
    case Failure::overloaded:
      return {503, FailureSource::client, false, RetryKind::none, "Too many connections"};
    case Failure::missing_host:
      return {400, FailureSource::client, false, RetryKind::none, "Missing Host header"};
    case Failure::host_too_long:
      return {400, FailureSource::client, false, RetryKind::none, "Host name too long"};
    case Failure::frontend_not_found:
      return {400, FailureSource::routing, false, RetryKind::none,
              "Cannot find a frontend for this host"};
    case Failure::no_live_backend:
      return {502, FailureSource::routing, false, RetryKind::none, "Cannot find a live backend"};
    case Failure::bad_backend_url:
      return {502, FailureSource::routing, false, RetryKind::none, "Backend URL is invalid"};
    case Failure::store_unavailable:
      return {503, FailureSource::store, false, RetryKind::none, "Routing store unavailable"};
    case Failure::backend_refused:
      return {502, FailureSource::backend, true, RetryKind::elsewhere,
              "Backend refused the connection"};
    case Failure::backend_reset:
      return {502, FailureSource::backend, true, RetryKind::fresh_if_reused,
              "Backend closed the connection"};
    case Failure::backend_timeout:
      return {504, FailureSource::backend, true, RetryKind::elsewhere, "Backend timed out"};
    case Failure::backend_bad_response:
      return {502, FailureSource::backend, true, RetryKind::elsewhere,
              "Backend sent an invalid response"};
    case Failure::backend_tls_failed:
      return {502, FailureSource::backend, true, RetryKind::elsewhere,
              "TLS handshake with the backend failed"};
    case Failure::backend_broken_body:
      return {502, FailureSource::backend, false, RetryKind::none, "Backend failed mid-response"};
    case Failure::backend_stopped_reading:
      return {502, FailureSource::backend, false, RetryKind::elsewhere,
              "Backend stopped reading the request"};
    case Failure::pool_exhausted:
      return {504, FailureSource::backend, false, RetryKind::none,
              "No backend connection available"};
    case Failure::upgrade_to_http2_backend:
      return {502, FailureSource::routing, false, RetryKind::none,
              "Cannot upgrade a connection to an HTTP/2 backend"};
  }
  return {500, FailureSource::client, false, RetryKind::none, "Internal error"};
}

// Whether a backend's HTTP status counts as a passive health-check failure (SPEC section 6).
constexpr bool status_marks_dead(int status, bool has_retry_after, bool dead_on_500) {
  if (status == 500) return dead_on_500;
  if (status == 503 && has_retry_after) return false;  // announced maintenance
  return status >= 501 && status <= 599;
}

}  // namespace hipache
