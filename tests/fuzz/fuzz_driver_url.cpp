// Fuzz target: driver URLs (redis[s]://[user:password@]host[:port][/db][?tls][#prefix],
// redis[s]-sentinel://host:port[,host:port]/master[/db]...), backend URLs
// (http[s]://host[:port][/path]) and sentinel +switch-master payloads. parse_driver_url may only
// throw ConfigError; censor_driver_url, parse_backend_url and parse_switch_master never throw.
#include <cstddef>
#include <cstdint>
#include <string>

#include "hipache/config.hpp"
#include "hipache/route.hpp"
#include "store/redis_sentinel.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string url(reinterpret_cast<const char*>(data), size);
  try {
    const hipache::RedisEndpoint endpoint = hipache::parse_driver_url(url);
    if (endpoint.database < 0) __builtin_trap();
    if (endpoint.sentinels.empty()) {
      if (endpoint.host.empty() || endpoint.port == 0 || !endpoint.master_name.empty()) {
        __builtin_trap();
      }
    } else {
      if (endpoint.master_name.empty()) __builtin_trap();
      for (const auto& sentinel : endpoint.sentinels) {
        if (sentinel.host.empty() || sentinel.port == 0) __builtin_trap();
      }
    }
    // Client certificates come in pairs; TLS options only on TLS URLs.
    if (endpoint.tls.cert.empty() != endpoint.tls.key.empty()) __builtin_trap();
    if (!endpoint.tls.enabled && !(endpoint.tls.ca.empty() && endpoint.tls.cert.empty() &&
                                   endpoint.tls.server_name.empty())) {
      __builtin_trap();
    }
  } catch (const hipache::ConfigError&) {
  }
  (void)hipache::censor_driver_url(url);
  // The same bytes as a sentinel's +switch-master payload.
  if (const auto master = hipache::store::parse_switch_master(url, "m")) {
    if (master->port == 0 || url.substr(0, 2) != "m ") __builtin_trap();
  }
  const hipache::Backend backend = hipache::parse_backend_url(url);
  if (backend.url != url) __builtin_trap();
  if (backend.valid && (backend.port == 0 || backend.host.empty())) __builtin_trap();
  return 0;
}
