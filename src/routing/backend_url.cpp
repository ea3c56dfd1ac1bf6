#include <charconv>
#include <string>

#include "hipache/route.hpp"
#include "http/field_value.hpp"

namespace hipache {

namespace {
bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    const char c = s[i] >= 'A' && s[i] <= 'Z' ? static_cast<char>(s[i] + 32) : s[i];
    if (c != prefix[i]) return false;
  }
  return true;
}
}  // namespace

Backend parse_backend_url(const std::string& url) {
  Backend b;
  b.url = url;
  // The URL goes into x-debug-backend-url: a byte not allowed in a field value (CR, LF, NUL,
  // ...) would start a header of its own, even in the path that routing ignores.
  if (!http::is_field_value(url)) return b;
  std::string_view rest = url;
  if (starts_with_nocase(rest, "http://")) {
    rest.remove_prefix(7);
    b.port = 80;
  } else if (starts_with_nocase(rest, "https://")) {
    rest.remove_prefix(8);
    b.port = 443;
    b.tls = true;
  } else {
    return b;
  }
  // The authority ends at the first '/', '?' or '#'; the path is ignored (as Hipache did).
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) rest.remove_prefix(at + 1);
  std::string_view host = rest;
  std::string_view port;
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) return b;
    host = rest.substr(1, close - 1);
    const auto after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return b;
      port = after.substr(1);
    }
  } else if (const auto colon = rest.find(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (host.empty()) return b;
  if (!port.empty()) {
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
      return b;
    }
    b.port = static_cast<std::uint16_t>(value);
  }
  b.host = std::string(host);
  b.pool_key = b.host + ":" + std::to_string(b.port) + (b.tls ? "+tls" : "");
  b.valid = true;
  return b;
}

}  // namespace hipache
