// The rows of the key table of the server, top-level, lruCache and admin keys, and the list of
// every key; the TLS and active-check tables are in config_keys_tls.cpp and
// config_keys_health.cpp, all built with config/key_access.hpp.
#include "config/config_keys.hpp"

#include <array>
#include <cmath>
#include <cstdio>
#include <optional>
#include <utility>

#include "config/key_access.hpp"
#include "http/request_id.hpp"

namespace hipache::config {

std::string number_text(double number) {
  if (number == std::floor(number)) return std::to_string(static_cast<long long>(number));
  std::array<char, 32> buffer{};
  std::snprintf(buffer.data(), buffer.size(), "%g", number);
  return buffer.data();
}

[[noreturn]] void fail_range(const Reader& reader, const json& value, const std::string& key,
                             const Bounds& bounds) {
  if (bounds.min > 0) {
    reader.fail(key, "must be between " + number_text(bounds.min) + " and " +
                         number_text(bounds.max) + std::string(bounds.note));
  }
  reader.fail(key, "must be at most " + number_text(bounds.max) + ", got " + describe(value));
}

namespace {

// user and group: a name, or a numeric id.
struct ReadAccount {
  void operator()(const Reader& reader, const json& value, const std::string& key, const Bounds&,
                  std::string& out) const {
    if (value.is_number()) {
      const std::uint64_t id = reader.whole(value, key, UINT32_MAX - 1);
      // Spelled "root" so the privilege code has one name for "keep root", as Hipache allowed 0.
      out = id == 0 ? "root" : std::to_string(id);
      return;
    }
    if (!value.is_string()) {
      reader.fail(key, "expected a name or a numeric id, got " + describe(value));
    }
    out = value.get<std::string>();
    // Hipache refused an empty user when started as root rather than silently keep root.
    if (out.empty()) reader.fail(key, "must not be empty (use \"root\" to keep running as root)");
  }
};

struct ReadAccessLogFormat {
  void operator()(const Reader& reader, const json& value, const std::string& key, const Bounds&,
                  AccessLogFormat& out) const {
    const std::string name = reader.string(value, key);
    for (const auto& [known, format] : kAccessLogFormats) {
      if (name == known) {
        out = format;
        return;
      }
    }
    reader.fail(key, "unknown access log format " + describe(value) +
                         " (expected \"hipache\" or \"json\")");
  }
};

// server.requestIdHeader: a field name the proxy does not use itself; "" is null (off).
struct ReadRequestIdHeader {
  void operator()(const Reader& reader, const json& value, const std::string& key, const Bounds&,
                  std::optional<std::string>& out) const {
    std::string name = reader.string(value, key);
    if (name.empty()) {
      out.reset();
      return;
    }
    if (const auto problem = http::request_id_header_problem(name); !problem.empty()) {
      reader.fail(key, describe(value) + " " + std::string(problem));
    }
    out = std::move(name);
  }
};

// Hipache master listed it in its defaults (as null) but never used it.
constexpr Access<ServerSettings> kUnsupported = {
    [](const Reader& reader, const json& value, const std::string& key, const Bounds&,
       ServerSettings&) {
      if (!value.is_null()) reader.warn(key + " is not supported (ignored)");
    },
    nullptr};

json show_binds(const Config& config, bool tls) {
  json binds = json::array();
  for (const ListenAddress& listener : config.listeners) {
    if (listener.tls != tls || listener.admin) continue;
    json bind = json::object();
    if (tls) show_keys(tls_keys(), "https", listener.tls_settings, bind, true);
    bind["address"] = listener.address;
    bind["port"] = listener.port;
    bind["proxyProtocol"] = listener.proxy_protocol;
    binds.push_back(std::move(bind));
  }
  return binds;
}

using S = ServerSettings;
constexpr std::string_view kServer = "server";
constexpr Key<S> kServerKeys[] = {
    {kServer, "debug", member<&S::debug>, "Debug-level logging."},
    // A typo such as 10000 workers would fork the machine to death before anyone read a log line.
    Key<S>{kServer, "workers", member<&S::workers>, "Worker processes; 0 = one per CPU."}
        .within(at_most(1024))
        .documented_as("number of CPUs"),
    Key<S>{kServer, "maxSockets", member<&S::max_sockets>, "Pooled connections per backend."}
        .within(at_least(1)),
    {kServer, "tcpTimeout", member<&S::tcp_timeout_s>, "Idle connection timeout, s; 0 = none."},
    {kServer, "deadBackendTTL", member<&S::dead_backend_ttl_s>, "Seconds a dead backend is out."},
    {kServer, "retryOnError", member<&S::retry_on_error>, "Retries on another backend."},
    {kServer, "accessLog", member<&S::access_log>, "Access log file; null or \"\" = none."},
    {kServer, "httpKeepAlive", member<&S::http_keep_alive>, "Pool idle backend connections."},
    {kServer, "deadBackendOn500", member<&S::dead_backend_on_500>, "A 500 marks a backend dead."},
    {kServer, "staticDir", member<&S::static_dir>, "Directory of error_<code>.html pages."},
    {kServer, "lruCache", member<&S::lru_cache>, "Hipache's TTL route cache {size, ttl}."},
    {kServer, "memoryLimit", member<&S::memory_limit_mb>, "Worker memory limit, MB; 0 = none."},
    Key<S>{kServer, "memoryCheckInterval", member<&S::memory_check_interval_s>,
           "Seconds between memory samples."}
        .within(at_least(1, " (use memoryLimit 0 to disable)")),
    {kServer, "gracefulWait", member<&S::graceful_wait_s>, "Seconds a stopping worker may take."},
    {kServer, "backendTlsVerify", member<&S::backend_tls_verify>, "Verify https:// backends."},
    {kServer, "routeCache", member<&S::route_cache>, "The live route cache (CLIENT TRACKING)."},
    {kServer, "headerTimeout", member<&S::header_timeout_s>, "Seconds for the request header."},
    {kServer, "http2", member<&S::http2>, "HTTP/2 for clients (ALPN h2, h2c)."},
    {kServer, "maxConnections", member<&S::max_connections>, "Client connections per worker."},
    Key<S>{kServer, "redisTimeout", member<&S::redis_timeout_s>, "Longest wait for Redis, s."}
        .within(between(0.01, 3600, " seconds")),
    {kServer, "cpuAffinity", member<&S::cpu_affinity>, "Bind each worker to one CPU."},
    {kServer, "cpuSpread", member<&S::cpu_spread>, "Move busy workers off a shared CPU."},
    {kServer, "trustProxies", member<&S::trust_proxies>, "Proxies whose X-Forwarded-* count."},
    {kServer, "activeHealthCheck", member<&S::active_health_check>, "Built-in active checker."},
    Key<S>{kServer, "uniqueIdHeader", kUnsupported, "Hipache's unimplemented key."}.unlisted(),
    // Observability.
    {kServer, "accessLogFormat", member<&S::access_log_format, ReadAccessLogFormat>,
     "\"hipache\" lines or \"json\" objects."},
    {kServer, "requestIdHeader", member<&S::request_id_header, ReadRequestIdHeader>,
     "Header carrying a request id; null = none."},
};

constexpr std::string_view kLru = "server.lruCache";
constexpr Key<LruCacheSettings> kLruCacheKeys[] = {
    Key<LruCacheSettings>{kLru, "size", member<&LruCacheSettings::size>, "Hosts kept."}.within(
        at_least(1)),
    {kLru, "ttl", member<&LruCacheSettings::ttl_seconds>, "Seconds an answer is kept."},
};

json show_http_binds(const Config& config) {
  return show_binds(config, false);
}
json show_https_binds(const Config& config) {
  return show_binds(config, true);
}
json show_admin_binds(const Config& config) {
  json binds = json::array();
  for (const ListenAddress& listener : config.listeners) {
    if (listener.admin) binds.push_back({{"address", listener.address}, {"port", listener.port}});
  }
  return binds;
}
json admin_port() {
  return kDefaultAdminPort;
}
json admin_bind() {
  return json::array({std::string(kDefaultAdminBind)});
}
json show_driver(const Config& config) {
  json urls = json::array();
  for (const std::string& url : config.driver) urls.push_back(censor_driver_url(url));
  return urls;
}
// A Config built in code may leave group empty; it means the user's group then too.
json show_group(const Config& config) {
  return config.group.empty() ? config.user : config.group;
}
json http_port() {
  return kDefaultHttpPort;
}
json https_port() {
  return kDefaultHttpsPort;
}
json http_bind() {
  return json::array({std::string(kDefaultHttpBind)});
}
json driver_url() {
  return Config{}.driver.front();
}

constexpr Access<Config> kReadBySection = {};
constexpr Key<Config> kConfigKeys[] = {
    Key<Config>{"http", "port", kReadBySection, "Port of binds without one."}.defaults_to(
        http_port),
    Key<Config>{"http", "bind", {nullptr, show_http_binds}, "Plain-HTTP listeners."}.defaults_to(
        http_bind),
    Key<Config>{"https", "port", kReadBySection, "Port of binds without one."}.defaults_to(
        https_port),
    {"https", "bind", {nullptr, show_https_binds}, "TLS listeners."},
    {"https", "certDir", member<&Config::cert_dir>, "Directory of SNI certificates."},
    Key<Config>{"admin", "port", kReadBySection, "Port of admin binds without one."}.defaults_to(
        admin_port),
    Key<Config>{"admin", "bind", {nullptr, show_admin_binds}, "Admin listeners."}.defaults_to(
        admin_bind),
    Key<Config>{"", "driver", {nullptr, show_driver}, "Redis URL(s): reads, then writes."}
        .defaults_to(driver_url),
    {"", "user", member<&Config::user, ReadAccount>, "User to drop root to."},
    Key<Config>{"",
                "group",
                {member<&Config::group, ReadAccount>.read, show_group},
                "Group to drop root to."}
        .documented_as("the value of `user`"),
};

constexpr std::string_view kAdmin = "admin";
constexpr Key<AdminSettings> kAdminKeys[] = {
    Key<AdminSettings>{kAdmin, "token", member<&AdminSettings::token>, "Bearer token; \"\" = none."}
        .censored(),
    Key<AdminSettings>{kAdmin, "frontendMetrics", member<&AdminSettings::frontend_metrics>,
                       "Series for the N busiest frontends."}
        .within(at_most(kMaxFrontendMetrics)),
};

template <class Owner>
void list_keys(std::span<const Key<Owner>> keys, std::vector<KeyInfo>& out) {
  for (const Key<Owner>& key : keys) {
    json value = key.fallback != nullptr      ? key.fallback()
                 : key.access.show != nullptr ? key.access.show(Owner{})
                                              : json();
    out.push_back({std::string(key.section), std::string(key.name), std::move(value),
                   key.doc_default, key.listed});
  }
}

}  // namespace

std::span<const Key<ServerSettings>> server_keys() {
  return kServerKeys;
}
std::span<const Key<LruCacheSettings>> lru_cache_keys() {
  return kLruCacheKeys;
}
std::span<const Key<Config>> config_keys() {
  return kConfigKeys;
}
std::span<const Key<AdminSettings>> admin_keys() {
  return kAdminKeys;
}

json show_value(const json& value, bool secret) {
  if (secret && value.is_string() && !value.get_ref<const std::string&>().empty()) {
    return "<censored>";
  }
  return value;
}

std::vector<KeyInfo> all_keys() {
  std::vector<KeyInfo> keys;
  list_keys(server_keys(), keys);
  list_keys(lru_cache_keys(), keys);
  list_keys(active_health_check_keys(), keys);
  list_keys(tls_keys(), keys);
  list_keys(config_keys(), keys);
  list_keys(admin_keys(), keys);
  return keys;
}

}  // namespace hipache::config
