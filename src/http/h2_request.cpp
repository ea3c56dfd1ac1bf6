#include "http/h2_request.hpp"

#include "http/ascii.hpp"
#include "http/read.hpp"

namespace hipache::http {

namespace {
// RFC 9113 section 6.5.2: each field counts its name, its value and 32 bytes.
constexpr std::size_t kFieldOverhead = 32;
}  // namespace

std::string websocket_key(const std::array<std::uint8_t, 16>& nonce) {
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string key;
  key.reserve(24);
  for (std::size_t i = 0; i < nonce.size(); i += 3) {
    // Five groups of three bytes, then the 16th byte alone with "==" (16 = 5 * 3 + 1).
    const bool whole = i + 2 < nonce.size();
    const std::uint32_t group = (std::uint32_t{nonce[i]} << 16) |
                                (whole ? (std::uint32_t{nonce[i + 1]} << 8) | nonce[i + 2] : 0);
    key += kAlphabet[(group >> 18) & 63];
    key += kAlphabet[(group >> 12) & 63];
    key += whole ? kAlphabet[(group >> 6) & 63] : '=';
    key += whole ? kAlphabet[group & 63] : '=';
  }
  return key;
}

void H2RequestBuilder::add(std::string_view name, std::string_view value) {
  size_ += name.size() + value.size() + kFieldOverhead;
  if (size_ > kHeaderLimit) return;  // finish() refuses the request; keep nothing more
  if (name == ":method") {
    request_.method_string(value);
    has_method_ = !value.empty();
  } else if (name == ":path") {
    request_.target(value);
    has_path_ = !value.empty();  // RFC 9113 section 8.3.1: never empty
  } else if (name == ":authority") {
    authority_ = value;
  } else if (name == ":protocol") {
    protocol_ = value;
  } else if (name == ":scheme") {
    // The listener says whether the client used TLS; the scheme it claims adds nothing.
  } else if (!name.empty() && name.front() == ':') {
    malformed_ = true;  // no other pseudo-field exists in a request (RFC 9113 section 8.3)
  } else if (name == "cookie") {
    if (!cookie_.empty()) cookie_ += "; ";
    cookie_ += value;
  } else {
    request_.insert(name, value);
  }
}

H2RequestError H2RequestBuilder::finish(std::string_view websocket_key) {
  if (size_ > kHeaderLimit) return H2RequestError::too_large;
  if (!has_method_ || malformed_) return H2RequestError::missing_fields;
  if (request_.method() == bhttp::verb::connect) {
    // Plain CONNECT, or one extended to another protocol, is not proxied: an HTTP/1.1 backend
    // would read it as a tunnel to an authority. (nghttp2 refuses :protocol on other methods.)
    if (!iequals(protocol_, "websocket")) return H2RequestError::connect;
    // RFC 8441 section 4: :path and :authority are both required.
    if (!has_path_ || authority_.empty()) return H2RequestError::missing_fields;
    // Its DATA frames are the tunnel's bytes once upgraded (nghttp2 does not count them against
    // a length on a CONNECT): forwarded on the upgrade GET, a length would have the backend read
    // the tunnel's first bytes as a body.
    if (request_.count(bhttp::field::content_length) != 0) {
      return H2RequestError::websocket_body;
    }
    request_.method(bhttp::verb::get);
    request_.set(bhttp::field::connection, "Upgrade");
    request_.set(bhttp::field::upgrade, "websocket");
    request_.set(bhttp::field::sec_websocket_key, websocket_key);
    websocket_ = true;
  } else if (!protocol_.empty()) {
    return H2RequestError::missing_fields;  // :protocol belongs to CONNECT alone (section 4)
  }
  if (!has_path_) return H2RequestError::missing_fields;
  // :authority stands for Host (RFC 9113 section 8.3.1); a Host field beside it is dropped, so
  // that routing and the backend see one and the same name.
  if (!authority_.empty()) request_.set(bhttp::field::host, authority_);
  if (!cookie_.empty()) request_.set(bhttp::field::cookie, cookie_);
  request_.version(20);
  return H2RequestError::none;
}

}  // namespace hipache::http
