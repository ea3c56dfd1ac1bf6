// The rows of the key table, and the readers and printers their member types pick.
#include "config/config_keys.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <cstdio>
#include <optional>
#include <type_traits>
#include <utility>

#include "http/field_value.hpp"
#include "http/request_id.hpp"

namespace hipache::config {
namespace {

// Node/OpenSSL method names Hipache passed to tls.createServer; the TLS code maps them.
constexpr std::array<std::string_view, 12> kSecureProtocols = {
    "SSLv23_method",  "SSLv23_server_method",  "TLS_method",     "TLS_server_method",
    "TLSv1_2_method", "TLSv1_2_server_method", "TLSv1_3_method", "TLSv1_3_server_method",
    "TLSv1_method",   "TLSv1_server_method",   "TLSv1_1_method", "TLSv1_1_server_method"};

// A bound as an operator would write it: 3600, 0.01.
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

constexpr Bounds at_least(double min, std::string_view note = {}) {
  return {min, kMaxCount, note};
}
constexpr Bounds at_most(double max) {
  return {0, max, {}};
}
constexpr Bounds between(double min, double max, std::string_view note) {
  return {min, max, note};
}

// Reads a JSON value into a member, by the member's type; the type is the key's type.
struct ReadValue {
  void operator()(const Reader& reader, const json& value, const std::string& key, const Bounds&,
                  bool& out) const {
    out = reader.boolean(value, key);
  }

  template <std::unsigned_integral Number>
  void operator()(const Reader& reader, const json& value, const std::string& key,
                  const Bounds& bounds, Number& out) const {
    const std::uint64_t max = bounds.max == kUnbounded ? std::numeric_limits<std::uint64_t>::max()
                                                       : static_cast<std::uint64_t>(bounds.max);
    const std::uint64_t number = reader.whole(value, key, max);
    if (static_cast<double>(number) < bounds.min) {
      reader.fail(key, "must be at least " + number_text(bounds.min) + std::string(bounds.note));
    }
    out = static_cast<Number>(number);
  }

  void operator()(const Reader& reader, const json& value, const std::string& key,
                  const Bounds& bounds, double& out) const {
    const double number = reader.non_negative(value, key);
    if (number < bounds.min || number > bounds.max) fail_range(reader, value, key, bounds);
    out = number;
  }

  void operator()(const Reader& reader, const json& value, const std::string& key, const Bounds&,
                  std::string& out) const {
    out = reader.string(value, key);
  }

  // https.ca: one file or a list of files.
  void operator()(const Reader& reader, const json& value, const std::string& key, const Bounds&,
                  std::vector<std::string>& out) const {
    std::vector<std::string> files;
    if (value.is_string()) {
      files.push_back(value.get<std::string>());
    } else if (value.is_array()) {
      for (std::size_t i = 0; i < value.size(); ++i) {
        files.push_back(reader.string(value[i], index_key(key, i)));
      }
    } else {
      reader.fail(key, "expected a file name or a list of file names, got " + describe(value));
    }
    // An empty name is what a template leaves behind; it names no file.
    std::erase_if(files, [](const std::string& file) { return file.empty(); });
    out = std::move(files);
  }

  void operator()(const Reader& reader, const json& value, const std::string& key, const Bounds&,
                  std::vector<AddressRange>& out) const {
    if (!value.is_array()) {
      reader.fail(key,
                  "expected null or an array of addresses/CIDR ranges, got " + describe(value));
    }
    for (const auto& item : value) {
      const auto range =
          item.is_string() ? parse_address_range(item.get<std::string>()) : std::nullopt;
      if (!range) reader.fail(key, "expected an IP address or CIDR range, got " + describe(item));
      out.push_back(*range);
    }
  }

  void operator()(const Reader& reader, const json& value, const std::string& key, const Bounds&,
                  LruCacheSettings& out) const {
    if (!value.is_object()) {
      reader.fail(key, "expected null or {\"size\": ..., \"ttl\": ...}, got " + describe(value));
    }
    reader.warn_unknown(value, key, key_names(lru_cache_keys(), key));
    read_keys(reader, value, key, lru_cache_keys(), key, out);
  }

  void operator()(const Reader& reader, const json& value, const std::string& key, const Bounds&,
                  ActiveHealthCheckSettings& out) const {
    if (!value.is_object()) {
      reader.fail(key,
                  "expected null or {\"interval\": ..., \"timeout\": ...}, got " + describe(value));
    }
    reader.warn_unknown(value, key, key_names(active_health_check_keys(), key));
    read_keys(reader, value, key, active_health_check_keys(), key, out);
  }

  // Reached for a non-null value only (null resets the member). An empty string is what a
  // template leaves behind: the same as null.
  template <class Value>
  void operator()(const Reader& reader, const json& value, const std::string& key,
                  const Bounds& bounds, std::optional<Value>& out) const {
    Value read{};
    (*this)(reader, value, key, bounds, read);
    if constexpr (std::is_same_v<Value, std::string>) {
      if (read.empty()) {
        out.reset();
        return;
      }
    }
    out = std::move(read);
  }
};

struct ReadSecureProtocol {
  void operator()(const Reader& reader, const json& value, const std::string& key, const Bounds&,
                  std::string& out) const {
    std::string name = reader.string(value, key);
    if (!name.empty() && std::find(kSecureProtocols.begin(), kSecureProtocols.end(), name) ==
                             kSecureProtocols.end()) {
      reader.fail(key, "unsupported value " + describe(value) +
                           " (expected SSLv23_method, TLS_method, TLSv1_2_method, "
                           "TLSv1_3_method, TLSv1_1_method, TLSv1_method or their _server_method "
                           "forms)");
    }
    out = std::move(name);
  }
};

// The check request's method: an HTTP token (RFC 9110 section 5.6.2), as the request line needs.
struct ReadMethod {
  void operator()(const Reader& reader, const json& value, const std::string& key, const Bounds&,
                  std::string& out) const {
    std::string method = reader.string(value, key);
    const auto tchar = [](char c) {
      return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
             std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    };
    if (method.empty() || !std::all_of(method.begin(), method.end(), tchar)) {
      reader.fail(key,
                  "expected an HTTP method such as \"HEAD\" or \"GET\", got " + describe(value));
    }
    out = std::move(method);
  }
};

// The check request's target: an origin-form path, no space or control byte.
struct ReadCheckPath {
  void operator()(const Reader& reader, const json& value, const std::string& key, const Bounds&,
                  std::string& out) const {
    std::string path = reader.string(value, key);
    const auto visible = [](char c) { return static_cast<unsigned char>(c) > 0x20 && c != 0x7f; };
    if (!path.starts_with('/') || !std::all_of(path.begin(), path.end(), visible)) {
      reader.fail(key,
                  "expected a path starting with \"/\" without spaces, got " + describe(value));
    }
    out = std::move(path);
  }
};

// The check request's Host header (null: the frontend's name).
struct ReadCheckHost {
  void operator()(const Reader& reader, const json& value, const std::string& key, const Bounds&,
                  std::optional<std::string>& out) const {
    std::string host = reader.string(value, key);
    if (!http::is_field_value(host)) {
      reader.fail(key, "must not contain control characters, got " + describe(value));
    }
    if (host.empty()) {
      out.reset();
    } else {
      out = std::move(host);
    }
  }
};

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

// server.accessLogFormat.
constexpr std::pair<std::string_view, AccessLogFormat> kAccessLogFormats[] = {
    {"hipache", AccessLogFormat::hipache}, {"json", AccessLogFormat::json}};

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

// The --dry form of a member, by its type.
struct ShowValue {
  template <class Value>
  json operator()(const Value& value) const {
    return json(value);
  }
  json operator()(const std::vector<AddressRange>& ranges) const {
    json texts = json::array();
    for (const auto& range : ranges) texts.push_back(range.text);
    return texts;
  }
  json operator()(AccessLogFormat format) const {
    for (const auto& [name, known] : kAccessLogFormats) {
      if (format == known) return std::string(name);
    }
    return nullptr;
  }
  json operator()(const LruCacheSettings& cache) const {
    json out = json::object();
    show_keys(lru_cache_keys(), "server.lruCache", cache, out);
    return out;
  }
  json operator()(const ActiveHealthCheckSettings& check) const {
    json out = json::object();
    show_keys(active_health_check_keys(), "server.activeHealthCheck", check, out);
    return out;
  }
  template <class Value>
  json operator()(const std::optional<Value>& value) const {
    return value ? (*this)(*value) : json(nullptr);
  }
};

template <class>
struct MemberOf;
template <class Value, class Owner>
struct MemberOf<Value Owner::*> {
  using owner = Owner;
  using value = Value;
};

template <class>
constexpr bool kIsOptional = false;
template <class Value>
constexpr bool kIsOptional<std::optional<Value>> = true;

// The access of a row that fills one member. A null value keeps the default, except that an
// optional member takes it as "none" (server.accessLog: null disables the log).
template <auto Member, class Read = ReadValue,
          class Owner = typename MemberOf<decltype(Member)>::owner>
constexpr Access<Owner> member = {
    [](const Reader& reader, const json& value, const std::string& key, const Bounds& bounds,
       Owner& owner) {
      auto& field = owner.*Member;
      if (value.is_null()) {
        if constexpr (kIsOptional<typename MemberOf<decltype(Member)>::value>) field.reset();
        return;
      }
      Read{}(reader, value, key, bounds, field);
    },
    [](const Owner& owner) { return ShowValue{}(owner.*Member); }};

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

using A = ActiveHealthCheckSettings;
constexpr std::string_view kActive = "server.activeHealthCheck";
constexpr Key<A> kActiveHealthCheckKeys[] = {
    Key<A>{kActive, "interval", member<&A::interval_s>, "Seconds between checks."}.within(
        between(0.1, 3600, " seconds")),
    Key<A>{kActive, "timeout", member<&A::timeout_s>, "Seconds a check may take."}.within(
        between(0.1, 3600, " seconds")),
    {kActive, "method", member<&A::method, ReadMethod>, "Method of the check request."},
    {kActive, "path", member<&A::path, ReadCheckPath>, "Path of the check request."},
    {kActive, "host", member<&A::host, ReadCheckHost>, "Host header; null = the frontend."},
    Key<A>{kActive, "maxConcurrent", member<&A::max_concurrent>, "Checks in flight at once."}
        .within(at_least(1)),
    Key<A>{kActive, "maxBackends", member<&A::max_backends>, "Backends checked at once."}.within(
        at_least(1)),
    Key<A>{kActive, "lockTtl", member<&A::lock_ttl_s>, "Seconds an unrenewed lock holds."}.within(
        between(3, 86400, " seconds")),
    Key<A>{kActive, "releaseAfter", member<&A::release_after_s>, "Seconds before letting go."}
        .within(at_least(1)),
};

using T = TlsSettings;
constexpr std::string_view kHttps = "https";
constexpr Key<T> kTlsKeys[] = {
    Key<T>{kHttps, "key", member<&T::key>, "PEM private key file."}.per_listener().documented_as(
        "—"),
    Key<T>{kHttps, "cert", member<&T::cert>, "PEM certificate (chain) file."}
        .per_listener()
        .documented_as("—"),
    Key<T>{kHttps, "ca", member<&T::ca>, "Extra CA certificate files."}.per_listener(),
    Key<T>{kHttps, "passphrase", member<&T::passphrase>, "Passphrase of an encrypted key."}
        .per_listener()
        .censored(),
    // Not checked here: only OpenSSL knows which cipher strings it accepts (the TLS code asks).
    Key<T>{kHttps, "ciphers", member<&T::ciphers>, "OpenSSL cipher list."}.per_listener(),
    {kHttps, "honorCipherOrder", member<&T::honor_cipher_order>, "The server's cipher order."},
    Key<T>{kHttps, "secureProtocol", member<&T::secure_protocol, ReadSecureProtocol>,
           "Node/OpenSSL method name."}
        .per_listener(),
    Key<T>{kHttps, "secureOptions", member<&T::secure_options>, "OpenSSL SSL_OP_* bits."}.within(
        at_most(kUnbounded)),
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
std::span<const Key<ActiveHealthCheckSettings>> active_health_check_keys() {
  return kActiveHealthCheckKeys;
}
std::span<const Key<TlsSettings>> tls_keys() {
  return kTlsKeys;
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
