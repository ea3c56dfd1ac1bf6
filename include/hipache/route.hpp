// Plain value types for one resolved frontend: what the router hands to the balancer.
#pragma once

#include <boost/container/small_vector.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace hipache {

// What a request reads of a route sits together (one backend, its flags and pool key), since a
// route read from a cache of thousands is rarely in the CPU's caches: each separately
// allocated part would be one more miss per request.
struct Backend {
  std::string host;  // without brackets for IPv6
  std::uint16_t port = 0;
  bool tls = false;      // https:// or h2:// backend
  bool http2 = false;    // h2c:// or h2:// backend: spoken to in HTTP/2
  bool valid = false;    // false: the URL could not be parsed (502 if picked)
  bool dead = false;     // in the frontend's dead set (or marked dead by this worker)
  std::string pool_key;  // "host:port" (+ "+tls", "+h2"): the upstream pool's key; empty: invalid
  std::string url;       // as stored in Redis; logged and published verbatim
};

struct Route {
  // Two backends, the usual count, live inside the route itself: no pointer to chase.
  boost::container::small_vector<Backend, 2> backends;
  std::string identifier;    // element 0 of the frontend list (the "vhost"), for logs
  std::string frontend_key;  // the list that matched, without prefix, e.g. "*.example.com"
};

// Parses a backend URL "http://host[:port][/path]", "https://...", or the HTTP/2 schemes
// "h2c://..." (cleartext, port 80 by default) and "h2://..." (TLS, 443). Never throws.
Backend parse_backend_url(const std::string& url);

// A URL's port as written: decimal digits only, 1 to 65535; nullopt otherwise.
std::optional<std::uint16_t> parse_port(std::string_view digits);

}  // namespace hipache
