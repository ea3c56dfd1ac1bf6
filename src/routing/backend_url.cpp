#include <algorithm>
#include <boost/url/parse.hpp>
#include <charconv>
#include <iterator>
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

std::optional<std::uint16_t> parse_port(std::string_view digits) {
  unsigned value = 0;
  const auto* end = digits.data() + digits.size();
  if (digits.empty() || digits.front() < '0' || digits.front() > '9') return std::nullopt;
  const auto [stop, ec] = std::from_chars(digits.data(), end, value);
  if (ec != std::errc() || stop != end || value == 0 || value > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

Backend parse_backend_url(const std::string& url) {
  Backend b;
  b.url = url;
  // The URL goes into x-debug-backend-url: a byte not allowed in a field value (CR, LF, NUL,
  // ...) would start a header of its own, even in the path that routing ignores.
  if (!http::is_field_value(url)) return b;
  std::string_view rest = url;
  // scheme, default port, TLS, HTTP/2
  static constexpr struct {
    std::string_view prefix;
    std::uint16_t port;
    bool tls;
    bool http2;
  } kSchemes[] = {{"http://", 80, false, false},
                  {"https://", 443, true, false},
                  {"h2c://", 80, false, true},
                  {"h2://", 443, true, true}};
  const auto* scheme = std::find_if(std::begin(kSchemes), std::end(kSchemes), [&](const auto& s) {
    return starts_with_nocase(rest, s.prefix);
  });
  if (scheme == std::end(kSchemes)) return b;
  rest.remove_prefix(scheme->prefix.size());
  b.port = scheme->port;
  b.tls = scheme->tls;
  b.http2 = scheme->http2;
  // The authority ends at the first '/', '?' or '#'; the path is ignored (as Hipache did), and
  // so is any userinfo, up to the last '@' (Node's url.parse took a raw '@' in a password).
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) rest.remove_prefix(at + 1);
  const auto authority = boost::urls::parse_authority(rest);
  if (!authority) return b;
  std::string host;
  switch (authority->host_type()) {
    case boost::urls::host_type::ipv6:
      host = authority->host_ipv6_address().to_string();
      break;
    case boost::urls::host_type::ipv4:
    case boost::urls::host_type::name:
      host = std::string(authority->encoded_host());  // as written: it goes to the resolver
      break;
    default:
      return b;  // IPvFuture, or no host
  }
  if (host.empty()) return b;
  // An empty port ("http://h:") means the scheme's default, as it did for Node.
  if (const std::string_view port = authority->port(); !port.empty()) {
    const auto value = parse_port(port);
    if (!value) return b;
    b.port = *value;
  }
  b.host = std::move(host);
  b.pool_key =
      b.host + ":" + std::to_string(b.port) + (b.tls ? "+tls" : "") + (b.http2 ? "+h2" : "");
  b.valid = true;
  return b;
}

}  // namespace hipache
