#include "http/h2_request.hpp"

#include "http/read.hpp"

namespace hipache::http {

namespace {
// RFC 9113 section 6.5.2: each field counts its name, its value and 32 bytes.
constexpr std::size_t kFieldOverhead = 32;
}  // namespace

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

H2RequestError H2RequestBuilder::finish() {
  if (size_ > kHeaderLimit) return H2RequestError::too_large;
  if (!has_method_ || malformed_) return H2RequestError::missing_fields;
  // CONNECT, extended (RFC 8441, :protocol) or not, is not proxied: an HTTP/1.1 backend would
  // read it as a tunnel to an authority. (nghttp2 refuses :protocol anyway while we do not
  // announce SETTINGS_ENABLE_CONNECT_PROTOCOL.)
  if (request_.method() == bhttp::verb::connect) return H2RequestError::connect;
  if (!has_path_) return H2RequestError::missing_fields;
  // :authority stands for Host (RFC 9113 section 8.3.1); a Host field beside it is dropped, so
  // that routing and the backend see one and the same name.
  if (!authority_.empty()) request_.set(bhttp::field::host, authority_);
  if (!cookie_.empty()) request_.set(bhttp::field::cookie, cookie_);
  request_.version(20);
  return H2RequestError::none;
}

}  // namespace hipache::http
