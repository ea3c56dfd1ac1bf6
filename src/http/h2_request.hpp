// The request an HTTP/2 stream's header block describes, as the HTTP/1.1 request an exchange
// routes and forwards (RFC 9113 section 8.3): the pseudo-header fields become the request line
// and Host, cookie fields are joined into one (section 8.2.3). Pure: no I/O, unit-tested and
// fuzzed (tests/fuzz/fuzz_h2_request.cpp). nghttp2 has checked the block's syntax before: each
// pseudo-field once and first, lowercase names, no connection-specific field, TE only "trailers",
// no CR, LF or NUL in a value.
//
// RFC 8441: a CONNECT with `:protocol: websocket` (extended CONNECT) becomes the HTTP/1.1 upgrade
// a WebSocket backend expects: GET <path>, Connection: Upgrade, Upgrade: websocket and a
// Sec-WebSocket-Key of ours (an HTTP/2 client sends none, section 5).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "http/message.hpp"

namespace hipache::http {

enum class H2RequestError {
  none,
  too_large,       // more header bytes than kHeaderLimit (as SETTINGS_MAX_HEADER_LIST_SIZE counts)
  missing_fields,  // no :method, no :path, or a pseudo-field a request has not
  connect,         // CONNECT, plain or extended to a protocol other than websocket: not proxied
  websocket_body,  // a WebSocket CONNECT with content-length: its DATA frames are no body
};

// A Sec-WebSocket-Key (RFC 6455 section 4.1): the base64 text of 16 random bytes.
std::string websocket_key(const std::array<std::uint8_t, 16>& nonce);

class H2RequestBuilder {
 public:
  explicit H2RequestBuilder(Request& request) : request_(request) {}

  // One field of the block, as received.
  void add(std::string_view name, std::string_view value);
  // After the last field: completes the request (version 2.0, Host from :authority). An extended
  // CONNECT for websocket becomes an upgrade GET carrying `websocket_key` (see websocket_key()).
  H2RequestError finish(std::string_view websocket_key);

  // After finish(): the request is a WebSocket upgrade (RFC 8441); the stream's DATA frames are
  // the tunnel's bytes, not a request body.
  bool websocket() const { return websocket_; }

  // RFC 8441 extended CONNECT's :protocol (e.g. "websocket"), empty without one.
  const std::string& protocol() const { return protocol_; }

 private:
  Request& request_;
  std::string authority_;
  std::string protocol_;
  std::string cookie_;
  std::size_t size_ = 0;
  bool has_method_ = false;
  bool has_path_ = false;
  bool malformed_ = false;
  bool websocket_ = false;
};

}  // namespace hipache::http
