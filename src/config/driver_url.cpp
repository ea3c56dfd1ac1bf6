// Driver URL parsing: redis://[:password@]host[:port][/db][#prefix], and the forms Hipache did
// not have: rediss:// (TLS, options in the query), redis-sentinel:// and ACL users.
//
// Hipache handed these URLs to Node's url.parse and read hostname, port, auth, path and hash
// from the result. This parser accepts the same forms but refuses what Node silently turned into
// something else (a query string, an unbracketed IPv6 address, a non-numeric database), because a
// proxy that quietly talks to the wrong Redis is worse than one that refuses to start. Not
// Boost.URL: its RFC 3986 grammar refuses a password with a raw '@' (or other characters outside
// the userinfo grammar) that Node took, so configs that ran under Hipache would stop working.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cctype>
#include <climits>
#include <string>
#include <string_view>

#include "hipache/config.hpp"

namespace hipache {
namespace {

constexpr std::string_view kCensored = "<censored>";

// Where the userinfo ("user:password") sits in a URL, if it has one.
struct UserinfoSpan {
  std::size_t begin = std::string::npos;  // first character after "//"
  std::size_t end = std::string::npos;    // the '@'
};

UserinfoSpan find_userinfo(std::string_view url) {
  const std::size_t slashes = url.find("//");
  if (slashes == std::string_view::npos) return {};
  const std::size_t begin = slashes + 2;
  std::size_t authority_end = url.find_first_of("/?#", begin);
  if (authority_end == std::string_view::npos) authority_end = url.size();
  // The last '@' ends the userinfo: Node did the same, so a raw '@' inside a password works.
  const std::size_t at = url.substr(0, authority_end).rfind('@');
  if (at == std::string_view::npos || at < begin) return {};
  return {begin, at};
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Node's url.parse percent-decoded the auth part, so "p%40ss" meant "p@ss" to Hipache too.
bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int high = hex_value(in[i + 1]);
    const int low = hex_value(in[i + 2]);
    if (high < 0 || low < 0) return false;
    out.push_back(static_cast<char>(high * 16 + low));
    i += 2;
  }
  return true;
}

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (const char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// Digits only, no sign, no overflow past `max`.
bool parse_bounded(std::string_view s, long long max, long long& value) {
  if (!all_digits(s)) return false;
  value = 0;
  for (const char c : s) {
    value = value * 10 + (c - '0');
    if (value > max) return false;
  }
  return true;
}

bool valid_hostname(std::string_view host) {
  for (const char c : host) {
    const auto u = static_cast<unsigned char>(c);
    if (!std::isalnum(u) && c != '-' && c != '.' && c != '_') return false;
  }
  return true;
}

class UrlParser {
 public:
  explicit UrlParser(const std::string& url) : url_(url) {}

  RedisEndpoint parse() {
    RedisEndpoint endpoint;
    const std::size_t colon = url_.find(':');
    if (colon == std::string::npos) fail("missing scheme (expected redis://host:port)");
    std::string scheme = url_.substr(0, colon);
    for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const bool sentinel = scheme == "redis-sentinel" || scheme == "rediss-sentinel";
    endpoint.tls.enabled = scheme == "rediss" || scheme == "rediss-sentinel";
    if (scheme != "redis" && scheme != "rediss" && !sentinel) {
      fail("unsupported scheme \"" + scheme +
           "\" (expected redis, rediss, redis-sentinel or rediss-sentinel)");
    }

    std::string_view rest = std::string_view(url_).substr(colon + 1);
    if (rest.empty() && scheme == "redis") return endpoint;  // Hipache's default: local Redis
    if (rest.substr(0, 2) != "//") fail("expected \"//\" after \"" + scheme + ":\"");
    rest.remove_prefix(2);

    if (const std::size_t hash = rest.find('#'); hash != std::string_view::npos) {
      endpoint.prefix = std::string(rest.substr(hash + 1));
      rest = rest.substr(0, hash);
    }
    if (const std::size_t query = rest.find('?'); query != std::string_view::npos) {
      parse_query(rest.substr(query + 1), endpoint);
      rest = rest.substr(0, query);
    }

    std::string_view authority = rest;
    std::string_view path;
    if (const std::size_t slash = rest.find('/'); slash != std::string_view::npos) {
      authority = rest.substr(0, slash);
      path = rest.substr(slash);
    }

    if (const std::size_t at = authority.rfind('@'); at != std::string_view::npos) {
      parse_userinfo(authority.substr(0, at), endpoint);
      authority.remove_prefix(at + 1);
    }
    if (sentinel) {
      parse_sentinels(authority, endpoint);
      path = parse_master_name(path, endpoint);
    } else {
      parse_hostport(authority, endpoint);
    }
    parse_database(path, endpoint);
    return endpoint;
  }

 private:
  [[noreturn]] void fail(const std::string& reason) const {
    throw ConfigError("bad driver URL \"" + censor_driver_url(url_) + "\": " + reason);
  }

  // "user:password" or ":password". A user names a Redis 6 ACL user (AUTH user password).
  // Without a colon the whole userinfo is the password, as in Hipache.
  void parse_userinfo(std::string_view userinfo, RedisEndpoint& endpoint) const {
    const std::size_t colon = userinfo.find(':');
    if (colon == std::string_view::npos) {
      if (!percent_decode(userinfo, endpoint.password))
        fail("bad percent-encoding in the password");
      return;
    }
    if (!percent_decode(userinfo.substr(0, colon), endpoint.user)) {
      fail("bad percent-encoding in the user name");
    }
    if (!percent_decode(userinfo.substr(colon + 1), endpoint.password)) {
      fail("bad percent-encoding in the password");
    }
  }

  // TLS options: ca, cert, key and serverName, each at most once, percent-decoded.
  void parse_query(std::string_view query, RedisEndpoint& endpoint) const {
    if (!endpoint.tls.enabled) {
      fail("query strings are only for TLS options (rediss:// or rediss-sentinel://)");
    }
    while (!query.empty()) {
      const std::size_t amp = query.find('&');
      const std::string_view pair = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
      const std::size_t eq = pair.find('=');
      const std::string_view name = pair.substr(0, eq);
      std::string* target = nullptr;
      if (name == "ca") target = &endpoint.tls.ca;
      if (name == "cert") target = &endpoint.tls.cert;
      if (name == "key") target = &endpoint.tls.key;
      if (name == "serverName") target = &endpoint.tls.server_name;
      if (target == nullptr) {
        fail("unknown query parameter \"" + std::string(name) +
             "\" (expected ca, cert, key or serverName)");
      }
      if (eq == std::string_view::npos || eq + 1 == pair.size()) {
        fail("query parameter \"" + std::string(name) + "\" needs a value");
      }
      if (!target->empty()) fail("query parameter \"" + std::string(name) + "\" given twice");
      if (!percent_decode(pair.substr(eq + 1), *target)) {
        fail("bad percent-encoding in query parameter \"" + std::string(name) + "\"");
      }
    }
    if (endpoint.tls.cert.empty() != endpoint.tls.key.empty()) {
      fail("a client certificate needs both cert and key");
    }
  }

  // "host:port[,host:port...]": every sentinel, tried in this order.
  void parse_sentinels(std::string_view list, RedisEndpoint& endpoint) const {
    if (list.empty()) fail("a sentinel URL needs at least one sentinel host:port");
    while (true) {
      const std::size_t comma = list.find(',');
      RedisEndpoint one;
      one.port = 26379;
      const std::string_view item = list.substr(0, comma);
      if (item.empty()) fail("empty sentinel address in the list");
      parse_hostport(item, one);
      endpoint.sentinels.push_back({one.host, one.port});
      if (comma == std::string_view::npos) break;
      list.remove_prefix(comma + 1);
    }
    endpoint.host.clear();
    endpoint.port = 0;
  }

  // "/<master name>[/db]": returns what follows the name ("" or "/db").
  std::string_view parse_master_name(std::string_view path, RedisEndpoint& endpoint) const {
    const std::string_view name = path.empty() ? path : path.substr(1, path.find('/', 1) - 1);
    if (name.empty())
      fail("a sentinel URL needs the master's name: redis-sentinel://host:port/name");
    for (const char c : name) {
      if (!std::isalnum(static_cast<unsigned char>(c)) &&
          std::string_view("-._:").find(c) == std::string_view::npos) {
        fail("the master name must be letters, digits, '-', '.', '_' or ':'");
      }
    }
    endpoint.master_name = std::string(name);
    return path.substr(1 + name.size());
  }

  void parse_hostport(std::string_view hostport, RedisEndpoint& endpoint) const {
    std::string_view port;
    if (!hostport.empty() && hostport.front() == '[') {
      const std::size_t close = hostport.find(']');
      if (close == std::string_view::npos) fail("unterminated '[' in the host");
      const std::string host(hostport.substr(1, close - 1));
      in6_addr address{};
      if (inet_pton(AF_INET6, host.c_str(), &address) != 1) {
        fail("\"" + host + "\" is not an IPv6 address");
      }
      endpoint.host = host;
      const std::string_view after = hostport.substr(close + 1);
      if (!after.empty()) {
        if (after.front() != ':') fail("unexpected text after the IPv6 address");
        port = after.substr(1);
      }
    } else {
      const std::size_t colon = hostport.find(':');
      std::string_view host = hostport.substr(0, colon);
      if (colon != std::string_view::npos) {
        port = hostport.substr(colon + 1);
        if (port.find(':') != std::string_view::npos) {
          fail("an IPv6 address must be written in brackets, e.g. redis://[::1]:6379");
        }
      }
      if (!valid_hostname(host)) fail("\"" + std::string(host) + "\" is not a valid host name");
      if (!host.empty()) endpoint.host = std::string(host);
    }
    // An empty port ("redis://host:") means the default, as it did for Node.
    if (!port.empty()) {
      long long value = 0;
      if (!parse_bounded(port, 65535, value) || value == 0) {
        fail("port must be a number from 1 to 65535, got \"" + std::string(port) + "\"");
      }
      endpoint.port = static_cast<std::uint16_t>(value);
    }
  }

  void parse_database(std::string_view path, RedisEndpoint& endpoint) const {
    if (path.empty() || path == "/") return;
    const std::string_view db = path.substr(1);
    long long value = 0;
    if (!parse_bounded(db, INT_MAX, value)) {
      fail("database must be a non-negative integer, got \"" + std::string(db) + "\"");
    }
    endpoint.database = static_cast<int>(value);
  }

  const std::string& url_;
};

}  // namespace

RedisEndpoint parse_driver_url(const std::string& url) {
  return UrlParser(url).parse();
}

std::string censor_driver_url(const std::string& url) {
  const UserinfoSpan span = find_userinfo(url);
  if (span.begin == std::string::npos) return url;
  const std::string_view userinfo = std::string_view(url).substr(span.begin, span.end - span.begin);
  const std::size_t colon = userinfo.find(':');
  const std::size_t secret_begin =
      colon == std::string_view::npos ? span.begin : span.begin + colon + 1;
  if (secret_begin == span.end) return url;  // an empty password has nothing to hide
  std::string censored = url;
  censored.replace(secret_begin, span.end - secret_begin, kCensored);
  return censored;
}

}  // namespace hipache
