// Plain value types for one resolved frontend: what the router hands to the balancer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hipache {

struct Backend {
  std::string url;  // as stored in Redis; logged and published verbatim
  std::string host;  // without brackets for IPv6
  std::uint16_t port = 0;
  bool tls = false;    // https:// backend
  bool valid = false;  // false: the URL could not be parsed (502 if picked)
};

struct Route {
  std::string identifier;       // element 0 of the frontend list (the "vhost"), for logs
  std::string frontend_key;     // the list that matched, without prefix, e.g. "*.example.com"
  std::vector<Backend> backends;
  std::vector<bool> dead;       // dead[i]: backend i is in the dead set (same size as backends)
};

// Parses a backend URL "http://host[:port][/path]" or "https://...". Never throws.
Backend parse_backend_url(const std::string& url);

}  // namespace hipache
