// The configuration value type and its loader. Loading is the only place that reads the JSON
// file; everything else receives a validated Config. See docs/configuration.md for every key.
// A member's initializer is its key's default (src/config/config_keys.cpp reads it from here).
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "hipache/address_range.hpp"

namespace hipache {

// One config problem, already phrased for the operator: "<file>: <key>: <what is wrong>".
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// TLS material and options; used for the https section and for per-bind overrides.
struct TlsSettings {
  std::string key;              // path to the PEM private key
  std::string cert;             // path to the PEM certificate (chain allowed)
  std::vector<std::string> ca;  // paths to extra CA certificates
  std::string passphrase;       // for an encrypted key; censored in --dry output
  std::string ciphers;          // OpenSSL cipher string; empty = modern default
  bool honor_cipher_order = true;
  std::string secure_protocol;       // Node/OpenSSL method name, e.g. "TLSv1_2_method"
  std::uint64_t secure_options = 0;  // OpenSSL SSL_OP_* bits
};

// One socket to listen on.
struct ListenAddress {
  std::string address;  // IPv4 or IPv6 literal (no brackets); "::" / "0.0.0.0" = all interfaces
  std::uint16_t port = 0;
  bool tls = false;
  bool admin = false;           // the admin listener (metrics, status page), never proxied traffic
  TlsSettings tls_settings;     // the https section merged with this bind's overrides (tls only)
  bool proxy_protocol = false;  // connections start with a PROXY protocol header (v1 or v2)
};

struct LruCacheSettings {
  std::size_t size = 1000;
  double ttl_seconds = 5;
};

// server.activeHealthCheck (docs/operations.md, "Active health checks"): the built-in checker
// that speaks hipache-hchecker's Redis protocol. Absent = off.
struct ActiveHealthCheckSettings {
  double interval_s = 3;            // between two checks of one backend
  double timeout_s = 3;             // connect (+ TLS) and again for the answer
  std::string method = "HEAD";      // of the check request
  std::string path = "/";           // its target
  std::optional<std::string> host;  // its Host header; nullopt = the frontend's name
  unsigned max_concurrent = 16;     // checks in flight at once
  unsigned max_backends = 1000;     // backends checked by this node at once
  unsigned lock_ttl_s = 20;         // a lock not renewed for this long is free
  unsigned release_after_s = 1800;  // a backend unchanged this long is let go (hchecker's)
};

// TLS to Redis (rediss:// and rediss-sentinel:// URLs; the files come from the URL's query).
struct RedisTlsOptions {
  bool enabled = false;
  std::string ca;           // PEM CA file; empty = the system's trust store
  std::string cert;         // client certificate (with key), optional
  std::string key;          // client key
  std::string server_name;  // SNI and the name verified; empty = the host connected to
};

struct RedisAddress {
  std::string host;
  std::uint16_t port = 0;
  bool operator==(const RedisAddress&) const = default;
};

// A parsed driver URL: redis[s]://[[user]:password@]host[:port][/db][?tls options][#prefix], or
// redis[s]-sentinel://[[user]:password@]host:port[,host:port...]/master[/db][?...][#prefix].
struct RedisEndpoint {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  std::string user;  // an ACL user (AUTH user password); empty = AUTH password
  std::string password;
  int database = 0;
  std::string prefix;
  RedisTlsOptions tls;
  // Sentinel mode: host/port above are unused; the master named here is asked of these, in turn.
  std::vector<RedisAddress> sentinels;
  std::string master_name;
};

// server.accessLogFormat: Hipache's line, or one JSON object per line.
enum class AccessLogFormat { hipache, json };

struct ServerSettings {
  bool debug = false;
  unsigned workers = 0;  // 0 in the file is replaced by the CPU count on load
  unsigned max_sockets = 100;
  unsigned tcp_timeout_s = 30;  // 0 = no timeout
  unsigned dead_backend_ttl_s = 30;
  unsigned retry_on_error = 3;
  std::optional<std::string> access_log = "/var/log/hipache/access.log";  // nullopt = disabled
  bool http_keep_alive = false;
  bool dead_backend_on_500 = true;
  std::optional<std::string> static_dir;
  std::optional<LruCacheSettings> lru_cache;
  unsigned memory_limit_mb = 200;  // 0 = off
  unsigned memory_check_interval_s = 10;
  unsigned graceful_wait_s = 120;
  bool backend_tls_verify = true;
  bool route_cache = true;  // the live route cache (Redis client-side caching); false = Hipache's
                            // per-request reads
  unsigned header_timeout_s = 10;    // whole request header must arrive within; 0 = tcpTimeout
  bool http2 = true;                 // clients may speak HTTP/2 (ALPN h2, h2c prior knowledge)
  unsigned max_connections = 10000;  // open client connections per worker; beyond: 503; 0 = off
  double redis_timeout_s = 2;        // longest wait for a Redis reply before it counts as down
  // Each worker bound to one CPU of the master's allowed set, spread evenly (nginx's
  // worker_cpu_affinity auto): no two workers share a CPU while others sit idle.
  bool cpu_affinity = false;
  // Without cpu_affinity: a busy worker that finds another busy one on its CPU moves to a CPU
  // without one (process/cpu_spread.hpp).
  bool cpu_spread = true;
  // server.trustProxies: null = Hipache's behaviour (client X-Forwarded-* kept as sent). A list:
  // only these peers' X-Forwarded-* are kept (X-Forwarded-For gets the peer appended); anyone
  // else's are replaced.
  std::optional<std::vector<AddressRange>> trust_proxies;

  // Observability: the access log's format, and the header carrying a request id (nullopt = no
  // request ids) that is kept or made, forwarded, returned and logged.
  AccessLogFormat access_log_format = AccessLogFormat::hipache;
  std::optional<std::string> request_id_header;
  std::optional<ActiveHealthCheckSettings> active_health_check;  // nullopt = off
};

// The admin listener (docs/operations.md, "Metrics and status page"): off unless the file has an
// admin section. Its addresses are in Config::listeners, marked admin.
struct AdminSettings {
  std::string token;              // non-empty: every request needs "Authorization: Bearer <token>"
  unsigned frontend_metrics = 0;  // series for this many of the busiest frontends; 0 = none
};

struct Config {
  std::string source_path;  // the file it came from, for messages
  ServerSettings server;
  std::vector<ListenAddress> listeners;          // http and https binds, in file order
  TlsSettings https;                             // the https section's defaults
  std::string cert_dir;                          // https.certDir (SNI certificates), empty = none
  std::vector<std::string> driver = {"redis:"};  // raw URLs; first = reads, last = writes
  RedisEndpoint read_endpoint;                   // parsed driver.front()
  RedisEndpoint write_endpoint;                  // parsed driver.back()
  std::string user = "www-data";
  std::string group;                  // defaults to user
  std::vector<std::string> warnings;  // deprecations and unknown keys, one line each
  AdminSettings admin;

  bool admin_enabled() const {
    for (const auto& listener : listeners) {
      if (listener.admin) return true;
    }
    return false;
  }
};

// Reads, parses and validates a config file. Throws ConfigError naming the file and key.
Config load_config(const std::string& path);

// Same, from JSON text (path is only used in messages). Throws ConfigError.
Config parse_config(const std::string& json_text, const std::string& path);

// The effective config as pretty JSON with key and passphrase material censored (for --dry).
std::string describe_config(const Config& config);

// The default config path: config/config.json or config/config_<SETTINGS_FLAVOR>.json.
std::string default_config_path();

// Parses one driver URL. Throws ConfigError (message without the file part) when invalid.
RedisEndpoint parse_driver_url(const std::string& url);

// The URL with any password replaced by "<censored>", for log lines and --dry output.
// Never throws; text that is not a URL is returned unchanged.
std::string censor_driver_url(const std::string& url);

}  // namespace hipache
