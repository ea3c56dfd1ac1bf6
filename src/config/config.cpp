// Loading and validating the JSON config file.
//
// The file format is Hipache's, including the layouts older Hipache versions read, because the
// promise is that an existing config file keeps working unchanged. Three rules shape the code:
// - every problem is reported as one line naming the file and the dotted key, so an operator can
//   fix it without reading source code;
// - old layouts are translated into the current one here, with one warning line each, so nothing
//   downstream knows they exist;
// - anything unexpected in the file is a warning, anything wrong is an error: a typo in a key name
//   must not stop a proxy from starting, a wrong value must not start a proxy that does something
//   other than what the file says.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "hipache/config.hpp"

namespace hipache {
namespace {

using nlohmann::json;

// Durations and counts are handed to code that may use int or milliseconds; this bound keeps
// every conversion exact.
constexpr std::uint64_t kMaxCount = 2147483647;
// A typo such as 1000 workers would fork the machine to death before anyone read a log line.
constexpr std::uint64_t kMaxWorkers = 1024;
constexpr std::uint64_t kDefaultLruSize = 1000;
constexpr double kDefaultLruTtl = 5;

constexpr std::array<std::string_view, 8> kLegacyRedisKeys = {
    "redisHost",       "redisPort",       "redisPassword",       "redisDatabase",
    "redisMasterHost", "redisMasterPort", "redisMasterPassword", "redisMasterDatabase"};

// Node/OpenSSL method names Hipache passed to tls.createServer; the TLS code maps them.
constexpr std::array<std::string_view, 12> kSecureProtocols = {
    "SSLv23_method",  "SSLv23_server_method",  "TLS_method",     "TLS_server_method",
    "TLSv1_2_method", "TLSv1_2_server_method", "TLSv1_3_method", "TLSv1_3_server_method",
    "TLSv1_method",   "TLSv1_server_method",   "TLSv1_1_method", "TLSv1_1_server_method"};

std::string errno_text(int error) {
  return std::error_code(error, std::generic_category()).message();
}

// Messages end up as single log lines and single lines on a terminal, whatever a file name or a
// value contains.
std::string one_line(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  std::replace(text.begin(), text.end(), '\r', ' ');
  return text;
}

std::string join_key(const std::string& prefix, std::string_view key) {
  if (prefix.empty()) return std::string(key);
  return prefix + "." + std::string(key);
}

std::string index_key(const std::string& name, std::size_t index) {
  return name + "[" + std::to_string(index) + "]";
}

// A value as the operator wrote it, short enough for one line.
std::string describe(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    default: {
      std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
      if (text.size() > 60) text = text.substr(0, 57) + "...";
      return text;
    }
  }
}

// A key that is absent or null is "not set": the default applies. Hipache's defaults filled in
// only undefined keys, but a null left in a file almost always means "no opinion".
const json* find_set(const json& object, const std::string& key) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

unsigned cpu_count() {
  return std::max(1U, std::thread::hardware_concurrency());
}

// Canonical text of an IP literal (so duplicates are caught whatever the spelling), or nullopt.
std::optional<std::string> canonical_ip(const std::string& text) {
  std::array<char, INET6_ADDRSTRLEN> buffer{};
  in_addr v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    return std::string(inet_ntop(AF_INET, &v4, buffer.data(), buffer.size()));
  }
  // A link-local address needs its zone ("fe80::1%eth0"); inet_pton does not take one.
  const std::size_t percent = text.find('%');
  const std::string base = text.substr(0, percent);
  in6_addr v6{};
  if (inet_pton(AF_INET6, base.c_str(), &v6) != 1) return std::nullopt;
  std::string canonical(inet_ntop(AF_INET6, &v6, buffer.data(), buffer.size()));
  if (percent != std::string::npos) {
    const std::string zone = text.substr(percent + 1);
    if (zone.empty()) return std::nullopt;
    canonical += "%" + zone;
  }
  return canonical;
}

// Why a file cannot be read, or nullopt when it can. O_NONBLOCK so that a FIFO cannot hang the
// loader.
std::optional<std::string> unreadable_file(const std::string& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return errno_text(errno);
  struct stat info {};
  const bool is_directory = ::fstat(fd, &info) == 0 && S_ISDIR(info.st_mode);
  ::close(fd);
  if (is_directory) return errno_text(EISDIR);
  return std::nullopt;
}

std::string percent_encode(const std::string& text) {
  static constexpr std::string_view kHex = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    const bool unreserved = (byte >= 'A' && byte <= 'Z') || (byte >= 'a' && byte <= 'z') ||
                            (byte >= '0' && byte <= '9') || c == '-' || c == '.' || c == '_' ||
                            c == '~';
    if (unreserved) {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[byte >> 4]);
      out.push_back(kHex[byte & 0xF]);
    }
  }
  return out;
}

// Typed access to the JSON tree; every failure names the file and the dotted key.
class Reader {
 public:
  Reader(const std::string& path, std::vector<std::string>& warnings)
      : path_(path), warnings_(warnings) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw ConfigError(one_line(path_ + ": " + key + ": " + what));
  }

  void warn(const std::string& what) const { warnings_.push_back(one_line(path_ + ": " + what)); }

  void warn_unknown(const json& object, const std::string& prefix,
                    std::initializer_list<std::string_view> known) const {
    for (const auto& [key, value] : object.items()) {
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        warn("unknown key " + join_key(prefix, key) + " (ignored)");
      }
    }
  }

  // An object, or nullptr when absent or null.
  const json* section(const json& parent, const std::string& key, const std::string& name) const {
    const json* value = find_set(parent, key);
    if (value != nullptr && !value->is_object()) {
      fail(name, "expected an object, got " + describe(*value));
    }
    return value;
  }

  bool boolean(const json& value, const std::string& key) const {
    if (!value.is_boolean()) fail(key, "expected true or false, got " + describe(value));
    return value.get<bool>();
  }

  std::uint64_t whole(const json& value, const std::string& key, std::uint64_t max) const {
    std::uint64_t number = 0;
    if (value.is_number_unsigned()) {
      number = value.get<std::uint64_t>();
    } else if (value.is_number_integer()) {
      const auto signed_number = value.get<std::int64_t>();
      if (signed_number < 0) fail(key, "expected a non-negative number, got " + describe(value));
      number = static_cast<std::uint64_t>(signed_number);
    } else if (value.is_number_float()) {
      const double real = value.get<double>();
      if (!(real >= 0)) fail(key, "expected a non-negative number, got " + describe(value));
      if (real != std::floor(real)) fail(key, "expected a whole number, got " + describe(value));
      if (real >= 18446744073709551616.0) {
        fail(key, "must be at most " + std::to_string(max) + ", got " + describe(value));
      }
      number = static_cast<std::uint64_t>(real);
    } else {
      fail(key, "expected a non-negative number, got " + describe(value));
    }
    if (number > max)
      fail(key, "must be at most " + std::to_string(max) + ", got " + describe(value));
    return number;
  }

  unsigned count(const json& value, const std::string& key) const {
    return static_cast<unsigned>(whole(value, key, kMaxCount));
  }

  double non_negative(const json& value, const std::string& key) const {
    if (!value.is_number() || !(value.get<double>() >= 0)) {
      fail(key, "expected a non-negative number, got " + describe(value));
    }
    return value.get<double>();
  }

  std::string string(const json& value, const std::string& key) const {
    if (!value.is_string()) fail(key, "expected a string, got " + describe(value));
    return value.get<std::string>();
  }

  std::uint16_t port(const json& value, const std::string& key) const {
    if (!value.is_number()) fail(key, "expected a port number (1-65535), got " + describe(value));
    const std::uint64_t number = whole(value, key, 65535);
    if (number == 0) fail(key, "expected a port number (1-65535), got 0");
    return static_cast<std::uint16_t>(number);
  }

 private:
  const std::string& path_;
  std::vector<std::string>& warnings_;
};

// ---------------------------------------------------------------------------------------------
// server

void parse_lru_cache(const Reader& reader, const json& value, ServerSettings& server) {
  if (!value.is_object()) {
    reader.fail("server.lruCache",
                "expected null or {\"size\": ..., \"ttl\": ...}, got " + describe(value));
  }
  reader.warn_unknown(value, "server.lruCache", {"size", "ttl"});
  LruCacheSettings cache;
  cache.size = kDefaultLruSize;
  cache.ttl_seconds = kDefaultLruTtl;
  if (const json* size = find_set(value, "size")) {
    cache.size = reader.whole(*size, "server.lruCache.size", kMaxCount);
    if (cache.size == 0) reader.fail("server.lruCache.size", "must be at least 1");
  }
  if (const json* ttl = find_set(value, "ttl")) {
    cache.ttl_seconds = reader.non_negative(*ttl, "server.lruCache.ttl");
    // Consumers turn it into integer milliseconds; keep that conversion defined.
    if (cache.ttl_seconds > static_cast<double>(kMaxCount)) {
      reader.fail("server.lruCache.ttl",
                  "must be at most " + std::to_string(kMaxCount) + ", got " + describe(*ttl));
    }
  }
  server.lru_cache = cache;
}

void parse_server(const Reader& reader, const json* section, ServerSettings& server) {
  if (section == nullptr) {
    server.workers = cpu_count();
    return;
  }
  const json& object = *section;
  reader.warn_unknown(
      object, "server",
      {"debug", "workers", "maxSockets", "tcpTimeout", "deadBackendTTL", "retryOnError",
       "accessLog", "httpKeepAlive", "deadBackendOn500", "staticDir", "lruCache", "memoryLimit",
       "memoryCheckInterval", "gracefulWait", "backendTlsVerify", "routeCache", "headerTimeout",
       "maxConnections", "redisTimeout", "trustProxies", "uniqueIdHeader", "cpuAffinity",
       "cpuSpread",
       // 0.3.x keys, translated by the listener code below.
       "port", "address", "address6", "https"});

  const auto flag = [&](const char* key, bool& out) {
    if (const json* value = find_set(object, key))
      out = reader.boolean(*value, join_key("server", key));
  };
  const auto count = [&](const char* key, unsigned& out) {
    if (const json* value = find_set(object, key))
      out = reader.count(*value, join_key("server", key));
  };

  flag("debug", server.debug);
  flag("httpKeepAlive", server.http_keep_alive);
  flag("deadBackendOn500", server.dead_backend_on_500);
  flag("backendTlsVerify", server.backend_tls_verify);
  flag("routeCache", server.route_cache);
  flag("cpuAffinity", server.cpu_affinity);
  flag("cpuSpread", server.cpu_spread);
  count("tcpTimeout", server.tcp_timeout_s);
  count("deadBackendTTL", server.dead_backend_ttl_s);
  count("retryOnError", server.retry_on_error);
  count("memoryLimit", server.memory_limit_mb);
  count("gracefulWait", server.graceful_wait_s);
  count("headerTimeout", server.header_timeout_s);
  count("maxConnections", server.max_connections);
  if (const json* value = find_set(object, "redisTimeout")) {
    server.redis_timeout_s = reader.non_negative(*value, "server.redisTimeout");
    if (server.redis_timeout_s < 0.01 || server.redis_timeout_s > 3600) {
      reader.fail("server.redisTimeout", "must be between 0.01 and 3600 seconds");
    }
  }
  if (const json* value = find_set(object, "trustProxies")) {
    if (!value->is_array()) {
      reader.fail("server.trustProxies",
                  "expected null or an array of addresses/CIDR ranges, got " + describe(*value));
    }
    std::vector<AddressRange> ranges;
    for (const auto& item : *value) {
      const auto range =
          item.is_string() ? parse_address_range(item.get<std::string>()) : std::nullopt;
      if (!range) {
        reader.fail("server.trustProxies",
                    "expected an IP address or CIDR range, got " + describe(item));
      }
      ranges.push_back(*range);
    }
    server.trust_proxies = std::move(ranges);
  }

  if (const json* value = find_set(object, "workers")) {
    server.workers = static_cast<unsigned>(reader.whole(*value, "server.workers", kMaxWorkers));
  }
  // Hipache's default was a fixed 10; one worker per CPU is what that number was trying to be.
  if (server.workers == 0) server.workers = cpu_count();

  count("maxSockets", server.max_sockets);
  // Requests wait for a free socket once maxSockets are busy; 0 would make them wait forever.
  if (server.max_sockets == 0) reader.fail("server.maxSockets", "must be at least 1");

  count("memoryCheckInterval", server.memory_check_interval_s);
  if (server.memory_check_interval_s == 0) {
    reader.fail("server.memoryCheckInterval", "must be at least 1 (use memoryLimit 0 to disable)");
  }

  // accessLog is the one key where null has its own meaning: no access log.
  if (const auto it = object.find("accessLog"); it != object.end()) {
    if (it->is_null()) {
      server.access_log.reset();
    } else {
      std::string file = reader.string(*it, "server.accessLog");
      if (file.empty()) {
        server.access_log.reset();
      } else {
        server.access_log = std::move(file);
      }
    }
  }

  if (const json* value = find_set(object, "staticDir")) {
    std::string dir = reader.string(*value, "server.staticDir");
    if (!dir.empty()) server.static_dir = std::move(dir);
  }

  if (const json* value = find_set(object, "lruCache")) parse_lru_cache(reader, *value, server);

  // Hipache master listed it in its defaults (as null) but never used it.
  if (find_set(object, "uniqueIdHeader") != nullptr) {
    reader.warn("server.uniqueIdHeader is not supported (ignored)");
  }
}

// ---------------------------------------------------------------------------------------------
// listeners

// Which key each TLS file path came from, so a missing file is reported under the key the
// operator wrote.
struct TlsOrigins {
  std::string key = "https.key";
  std::string cert = "https.cert";
  std::string ca = "https.ca";
};

struct HttpsSection {
  TlsSettings tls;
  TlsOrigins origins;
  std::optional<std::uint16_t> port;
  std::optional<json> bind;
  std::string cert_dir;
};

// One entry of a bind list (or a legacy address), with the name to use in messages.
struct BindSource {
  json value;
  std::string name;
};

std::vector<std::string> parse_ca(const Reader& reader, const json& value, const std::string& key) {
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
  return files;
}

std::string parse_secure_protocol(const Reader& reader, const json& value, const std::string& key) {
  std::string name = reader.string(value, key);
  if (name.empty()) return name;
  if (std::find(kSecureProtocols.begin(), kSecureProtocols.end(), name) == kSecureProtocols.end()) {
    reader.fail(key, "unsupported value " + describe(value) +
                         " (expected SSLv23_method, TLS_method, TLSv1_2_method, TLSv1_3_method, "
                         "TLSv1_1_method, TLSv1_method or their _server_method forms)");
  }
  return name;
}

// Reads one TLS key of an https section, server.https or an https bind object. Returns false
// when `field` is not a TLS key.
bool parse_tls_field(const Reader& reader, const std::string& field, const json& value,
                     const std::string& prefix, TlsSettings& tls, TlsOrigins& origins) {
  const std::string key = join_key(prefix, field);
  if (field == "key") {
    tls.key = reader.string(value, key);
    origins.key = key;
  } else if (field == "cert") {
    tls.cert = reader.string(value, key);
    origins.cert = key;
  } else if (field == "ca") {
    tls.ca = parse_ca(reader, value, key);
    origins.ca = key;
  } else if (field == "passphrase") {
    tls.passphrase = reader.string(value, key);
  } else if (field == "ciphers") {
    // Not checked here: only OpenSSL knows which cipher strings it accepts (the TLS code asks).
    tls.ciphers = reader.string(value, key);
  } else if (field == "honorCipherOrder") {
    tls.honor_cipher_order = reader.boolean(value, key);
  } else if (field == "secureProtocol") {
    tls.secure_protocol = parse_secure_protocol(reader, value, key);
  } else if (field == "secureOptions") {
    tls.secure_options = reader.whole(value, key, UINT64_MAX);
  } else {
    return false;
  }
  return true;
}

// Applies an https section (or the 0.3.x server.https) on top of what `section` holds, so that
// later sources win key by key.
void parse_https(const Reader& reader, const json& object, const std::string& prefix, bool legacy,
                 HttpsSection& section) {
  if (legacy) {
    reader.warn_unknown(object, prefix,
                        {"port", "key", "cert", "ca", "passphrase", "ciphers", "honorCipherOrder",
                         "secureProtocol", "secureOptions"});
  } else {
    reader.warn_unknown(object, prefix,
                        {"port", "bind", "key", "cert", "ca", "passphrase", "ciphers",
                         "honorCipherOrder", "secureProtocol", "secureOptions", "certDir"});
  }
  for (const auto& [field, value] : object.items()) {
    if (value.is_null()) continue;
    const std::string key = join_key(prefix, field);
    if (field == "port") {
      section.port = reader.port(value, key);
    } else if (field == "bind" && !legacy) {
      section.bind = value;
    } else if (field == "certDir" && !legacy) {
      section.cert_dir = reader.string(value, key);
    } else {
      parse_tls_field(reader, field, value, prefix, section.tls, section.origins);
    }
  }
}

// A bind value may be one address, one object, or a list of either (Hipache wrapped a lone value
// in a list the same way).
std::vector<BindSource> expand_bind(const Reader& reader, const json& value,
                                    const std::string& name) {
  std::vector<BindSource> sources;
  if (value.is_string() || value.is_object()) {
    sources.push_back({value, name});
  } else if (value.is_array()) {
    for (std::size_t i = 0; i < value.size(); ++i)
      sources.push_back({value[i], index_key(name, i)});
  } else {
    reader.fail(name,
                "expected an address, a list of addresses or a list of {\"address\", "
                "\"port\"} objects, got " +
                    describe(value));
  }
  return sources;
}

std::string parse_address(const Reader& reader, const json& value, const std::string& key) {
  if (!value.is_string()) reader.fail(key, "expected an IP address, got " + describe(value));
  std::string address = value.get<std::string>();
  // "[::1]" is how IPv6 addresses are written next to a port; accept it on its own too.
  if (address.size() >= 2 && address.front() == '[' && address.back() == ']') {
    address = address.substr(1, address.size() - 2);
  }
  if (address == "localhost") return "127.0.0.1";
  if (const auto canonical = canonical_ip(address)) return *canonical;
  const bool looks_like_host_port =
      address.find(':') != std::string::npos && canonical_ip(address.substr(0, address.rfind(':')));
  if (looks_like_host_port || address.find("]:") != std::string::npos) {
    reader.fail(key, describe(value) +
                         " is not an IP address (give the port with {\"address\": "
                         "..., \"port\": ...})");
  }
  reader.fail(key, describe(value) +
                       " is not an IP address (host names are not resolved; use an address such "
                       "as 0.0.0.0 or ::)");
}

ListenAddress make_listener(const Reader& reader, const BindSource& source,
                            std::uint16_t default_port, const HttpsSection* https) {
  ListenAddress listener;
  listener.port = default_port;
  listener.tls = https != nullptr;
  if (https != nullptr) listener.tls_settings = https->tls;
  if (!source.value.is_object()) {
    listener.address = parse_address(reader, source.value, source.name);
    return listener;
  }

  const json& object = source.value;
  if (https != nullptr) {
    reader.warn_unknown(
        object, source.name,
        {"address", "port", "key", "cert", "ca", "passphrase", "ciphers", "secureProtocol"});
  } else {
    reader.warn_unknown(object, source.name, {"address", "port"});
  }
  const json* address = find_set(object, "address");
  if (address == nullptr) reader.fail(join_key(source.name, "address"), "missing");
  listener.address = parse_address(reader, *address, join_key(source.name, "address"));
  if (const json* port = find_set(object, "port")) {
    listener.port = reader.port(*port, join_key(source.name, "port"));
  }
  if (https == nullptr) return listener;

  TlsOrigins ignored;
  for (const std::string field : {"key", "cert", "ca", "passphrase", "ciphers", "secureProtocol"}) {
    if (const json* value = find_set(object, field)) {
      parse_tls_field(reader, field, *value, source.name, listener.tls_settings, ignored);
    }
  }
  // As in Hipache: the section's passphrase belongs to the section's key, so a bind with a key
  // of its own does not inherit it.
  if (listener.tls_settings.key != https->tls.key && find_set(object, "passphrase") == nullptr) {
    listener.tls_settings.passphrase.clear();
  }
  return listener;
}

// The origin of a listener's key/cert/ca for messages: its bind object when it overrides them.
TlsOrigins origins_for(const BindSource& source, const HttpsSection& https) {
  TlsOrigins origins = https.origins;
  if (source.value.is_object()) {
    if (find_set(source.value, "key")) origins.key = join_key(source.name, "key");
    if (find_set(source.value, "cert")) origins.cert = join_key(source.name, "cert");
    if (find_set(source.value, "ca")) origins.ca = join_key(source.name, "ca");
  }
  return origins;
}

void check_tls_files(const Reader& reader, const ListenAddress& listener,
                     const TlsOrigins& origins) {
  const std::string where =
      "an https listener (" + listener.address + " port " + std::to_string(listener.port) + ")";
  if (listener.tls_settings.key.empty())
    reader.fail(origins.key, "missing; " + where + " needs a private key");
  if (listener.tls_settings.cert.empty())
    reader.fail(origins.cert, "missing; " + where + " needs a certificate");
  const auto check = [&](const std::string& file, const std::string& key) {
    if (const auto error = unreadable_file(file)) {
      reader.fail(key, "cannot read \"" + file + "\": " + *error);
    }
  };
  check(listener.tls_settings.key, origins.key);
  check(listener.tls_settings.cert, origins.cert);
  for (const std::string& ca : listener.tls_settings.ca) check(ca, origins.ca);
}

// 0.3.x listened on server.address (IPv4) and server.address6 (IPv6), for http and https alike.
std::vector<BindSource> legacy_addresses(const Reader& reader, const json* address,
                                         const json* address6) {
  std::vector<BindSource> sources;
  const auto add = [&](const json* value, const std::string& name) {
    if (value == nullptr) return;
    if (!value->is_string() && !value->is_array()) {
      reader.fail(name, "expected an address or a list of addresses, got " + describe(*value));
    }
    for (BindSource& source : expand_bind(reader, *value, name)) {
      if (!source.value.is_string()) {
        reader.fail(source.name, "expected an IP address, got " + describe(source.value));
      }
      sources.push_back(std::move(source));
    }
  };
  add(address, "server.address");
  add(address6, "server.address6");
  // 0.3.x without an address listened on every interface. "0.0.0.0" rather than "::": a dual-stack
  // "::" fails outright on hosts with IPv6 disabled, and IPv6 users already had address6.
  if (address == nullptr && address6 == nullptr) sources.push_back({"0.0.0.0", "server.address"});
  return sources;
}

void parse_listeners(const Reader& reader, const json& root, const json* server, Config& config) {
  const json* http = reader.section(root, "http", "http");
  const json* https = reader.section(root, "https", "https");
  if (http != nullptr) reader.warn_unknown(*http, "http", {"port", "bind"});

  const json* legacy_port = server != nullptr ? find_set(*server, "port") : nullptr;
  const json* legacy_address = server != nullptr ? find_set(*server, "address") : nullptr;
  const json* legacy_address6 = server != nullptr ? find_set(*server, "address6") : nullptr;
  const json* legacy_https =
      server != nullptr ? reader.section(*server, "https", "server.https") : nullptr;
  const bool legacy_layout = legacy_port != nullptr || legacy_address != nullptr ||
                             legacy_address6 != nullptr || legacy_https != nullptr;

  const json* http_port = http != nullptr ? find_set(*http, "port") : nullptr;
  const json* http_bind = http != nullptr ? find_set(*http, "bind") : nullptr;
  const auto wins = [](const json* newer, const std::string& key) {
    return newer != nullptr ? " (" + key + " is also set and wins)" : std::string();
  };
  if (legacy_port != nullptr) {
    reader.warn("server.port is deprecated (Hipache 0.3.x); use http.port" +
                wins(http_port, "http.port"));
  }
  if (legacy_address != nullptr) {
    reader.warn("server.address is deprecated (Hipache 0.3.x); use http.bind and https.bind" +
                wins(http_bind, "http.bind"));
  }
  if (legacy_address6 != nullptr) {
    reader.warn("server.address6 is deprecated (Hipache 0.3.x); use http.bind and https.bind" +
                wins(http_bind, "http.bind"));
  }
  if (legacy_https != nullptr) {
    reader.warn(std::string("server.https is deprecated (Hipache 0.3.x); use the https section") +
                (https != nullptr ? " (keys also set in https win)" : ""));
  }

  // http
  std::uint16_t port = 80;
  if (legacy_port != nullptr) port = reader.port(*legacy_port, "server.port");
  if (http_port != nullptr) port = reader.port(*http_port, "http.port");
  std::vector<BindSource> http_sources;
  if (http_bind != nullptr) {
    http_sources = expand_bind(reader, *http_bind, "http.bind");
  } else if (legacy_layout) {
    http_sources = legacy_addresses(reader, legacy_address, legacy_address6);
  } else {
    http_sources.push_back({"127.0.0.1", "http.bind"});
  }

  // https: the 0.3.x section first, the current one on top of it
  HttpsSection section;
  if (legacy_https != nullptr && https == nullptr) {
    // A missing key is reported where this file keeps its TLS settings.
    section.origins = {"server.https.key", "server.https.cert", "server.https.ca"};
  }
  if (legacy_https != nullptr) parse_https(reader, *legacy_https, "server.https", true, section);
  if (https != nullptr) parse_https(reader, *https, "https", false, section);
  const std::uint16_t https_port = section.port.value_or(443);
  std::vector<BindSource> https_sources;
  if (section.bind) {
    https_sources = expand_bind(reader, *section.bind, "https.bind");
  } else if (legacy_https != nullptr) {
    https_sources = legacy_addresses(reader, legacy_address, legacy_address6);
  }

  std::map<std::pair<std::string, std::uint16_t>, std::string> used;  // socket -> first key
  const auto add = [&](ListenAddress listener, const std::string& name) {
    const auto [it, inserted] = used.emplace(std::pair(listener.address, listener.port), name);
    if (!inserted) {
      reader.fail(name, listener.address + " port " + std::to_string(listener.port) +
                            " is already used by " + it->second);
    }
    config.listeners.push_back(std::move(listener));
  };
  for (const BindSource& source : http_sources) {
    add(make_listener(reader, source, port, nullptr), source.name);
  }
  for (const BindSource& source : https_sources) {
    ListenAddress listener = make_listener(reader, source, https_port, &section);
    check_tls_files(reader, listener, origins_for(source, section));
    add(std::move(listener), source.name);
  }
  if (config.listeners.empty()) {
    reader.fail("http.bind", "nothing to listen on (http.bind and https.bind are both empty)");
  }

  config.https = section.tls;
  config.cert_dir = section.cert_dir;
  if (!config.cert_dir.empty()) {
    struct stat info {};
    if (::stat(config.cert_dir.c_str(), &info) != 0) {
      reader.fail("https.certDir", "cannot read \"" + config.cert_dir + "\": " + errno_text(errno));
    }
    if (!S_ISDIR(info.st_mode)) {
      reader.fail("https.certDir", "\"" + config.cert_dir + "\" is not a directory");
    }
  }
}

// ---------------------------------------------------------------------------------------------
// driver

// The 0.3.x top-level redis* keys, read as they were: numbers or numeric strings for ports and
// databases (Hipache glued them into a URL, so "6379" worked as well as 6379).
struct LegacyRedis {
  std::string host;
  std::string port;
  std::string password;
  std::string database;
};

std::string legacy_number(const Reader& reader, const json& value, const std::string& key,
                          std::uint64_t min, std::uint64_t max) {
  std::uint64_t number = 0;
  if (value.is_string()) {
    std::string text = value.get<std::string>();
    if (text.empty()) return text;
    if (text.size() > 10 ||
        !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      reader.fail(key, "expected a number, got " + describe(value));
    }
    number = std::stoull(text);
  } else {
    number = reader.whole(value, key, UINT64_MAX);
  }
  if (number < min || number > max) {
    reader.fail(key, "must be from " + std::to_string(min) + " to " + std::to_string(max) +
                         ", got " + describe(value));
  }
  return std::to_string(number);
}

LegacyRedis read_legacy_redis(const Reader& reader, const json& root, const std::string& infix) {
  LegacyRedis redis;
  const std::string host_key = "redis" + infix + "Host";
  const std::string port_key = "redis" + infix + "Port";
  const std::string password_key = "redis" + infix + "Password";
  const std::string database_key = "redis" + infix + "Database";
  if (const json* value = find_set(root, host_key)) redis.host = reader.string(*value, host_key);
  if (const json* value = find_set(root, port_key)) {
    redis.port = legacy_number(reader, *value, port_key, 1, 65535);
  }
  if (const json* value = find_set(root, password_key)) {
    redis.password = reader.string(*value, password_key);
  }
  if (const json* value = find_set(root, database_key)) {
    redis.database = legacy_number(reader, *value, database_key, 0, kMaxCount);
  }
  return redis;
}

std::string legacy_url(const LegacyRedis& redis) {
  std::string url = "redis://";
  if (!redis.password.empty()) url += ":" + percent_encode(redis.password) + "@";
  if (redis.host.find(':') != std::string::npos && redis.host.front() != '[') {
    url += "[" + redis.host + "]";
  } else {
    url += redis.host;
  }
  if (!redis.port.empty()) url += ":" + redis.port;
  if (!redis.database.empty() && redis.database != "0") url += "/" + redis.database;
  return url;
}

void parse_driver(const Reader& reader, const json& root, Config& config) {
  const json* driver = find_set(root, "driver");
  std::vector<std::string> names;  // the key each URL came from, for messages

  bool any_legacy = false;
  for (const std::string_view legacy_key : kLegacyRedisKeys) {
    const std::string key(legacy_key);
    if (find_set(root, key) == nullptr) continue;
    any_legacy = true;
    std::string note;
    if (driver != nullptr) {
      note = " (driver is also set and wins)";
    } else if (key.starts_with("redisMaster") && key != "redisMasterHost" &&
               find_set(root, "redisMasterHost") == nullptr) {
      // Hipache added a write URL only for redisMasterHost; keep that, but say so.
      note = " (ignored without redisMasterHost)";
    }
    reader.warn(key + " is deprecated (Hipache 0.3.x); use driver" + note);
  }
  // Read (and so type-check) the legacy values even when driver wins: a wrong value is still wrong.
  const LegacyRedis legacy_read = read_legacy_redis(reader, root, "");
  const LegacyRedis legacy_write = read_legacy_redis(reader, root, "Master");

  if (driver != nullptr) {
    config.driver.clear();
    if (driver->is_string()) {
      config.driver.push_back(driver->get<std::string>());
      names.emplace_back("driver");
    } else if (driver->is_array() && !driver->empty()) {
      for (std::size_t i = 0; i < driver->size(); ++i) {
        config.driver.push_back(reader.string((*driver)[i], index_key("driver", i)));
        names.push_back(index_key("driver", i));
      }
    } else {
      reader.fail("driver", "expected a URL or a non-empty list of URLs, got " + describe(*driver));
    }
  } else if (any_legacy) {
    config.driver = {legacy_url(legacy_read)};
    names.emplace_back("redisHost");
    if (find_set(root, "redisMasterHost") != nullptr) {
      config.driver.push_back(legacy_url(legacy_write));
      names.emplace_back("redisMasterHost");
    }
  } else {
    names.emplace_back("driver");
  }

  std::vector<RedisEndpoint> endpoints;
  for (std::size_t i = 0; i < config.driver.size(); ++i) {
    try {
      endpoints.push_back(parse_driver_url(config.driver[i]));
    } catch (const ConfigError& error) {
      reader.fail(names[i], error.what());
    }
  }
  if (config.driver.size() > 2) {
    reader.warn("driver: only the first (reads) and the last (writes) URL are used; " +
                std::to_string(config.driver.size() - 2) + " ignored");
  }
  config.read_endpoint = endpoints.front();
  config.write_endpoint = endpoints.back();
  // Hipache kept one prefix, the read URL's, for every key it read or wrote; a write URL without
  // a prefix must still mark the same dead: keys the reads look at.
  if (!config.write_endpoint.prefix.empty() &&
      config.write_endpoint.prefix != config.read_endpoint.prefix) {
    reader.warn("driver: the write URL's prefix \"" + config.write_endpoint.prefix +
                "\" is ignored; the read URL's prefix \"" + config.read_endpoint.prefix +
                "\" applies to both, as in Hipache");
  }
  config.write_endpoint.prefix = config.read_endpoint.prefix;
}

// ---------------------------------------------------------------------------------------------
// user and group

std::string parse_account(const Reader& reader, const json& value, const std::string& key) {
  if (value.is_number()) {
    const std::uint64_t id = reader.whole(value, key, UINT32_MAX - 1);
    // Spelled "root" so the privilege code has one name for "keep root", as Hipache allowed 0.
    return id == 0 ? "root" : std::to_string(id);
  }
  if (!value.is_string())
    reader.fail(key, "expected a name or a numeric id, got " + describe(value));
  std::string name = value.get<std::string>();
  // Hipache refused an empty user when started as root rather than silently keep root.
  if (name.empty()) reader.fail(key, "must not be empty (use \"root\" to keep running as root)");
  return name;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

Config parse_config(const std::string& json_text, const std::string& path) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& error) {
    // parse_error for bad syntax, out_of_range for a number no double holds. Drop nlohmann's
    // "[json.exception.parse_error.101] " tag; keep line, column and reason.
    std::string detail = error.what();
    if (const std::size_t tag_end = detail.find("] ");
        detail.starts_with("[json.") && tag_end != std::string::npos) {
      detail.erase(0, tag_end + 2);
    }
    throw ConfigError(one_line(path + ": invalid JSON: " + detail));
  }

  Config config;
  config.source_path = path;
  try {
    Reader reader(path, config.warnings);
    if (!root.is_object()) {
      throw ConfigError(
          one_line(path + ": expected a JSON object at the top level, got " + describe(root)));
    }
    std::vector<std::string_view> known = {"server", "http", "https", "driver", "user", "group"};
    known.insert(known.end(), kLegacyRedisKeys.begin(), kLegacyRedisKeys.end());
    for (const auto& [key, value] : root.items()) {
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        reader.warn("unknown key " + key + " (ignored)");
      }
    }

    const json* server = reader.section(root, "server", "server");
    parse_server(reader, server, config.server);
    parse_listeners(reader, root, server, config);
    parse_driver(reader, root, config);

    if (const json* user = find_set(root, "user"))
      config.user = parse_account(reader, *user, "user");
    config.group = config.user;
    if (const json* group = find_set(root, "group")) {
      config.group = parse_account(reader, *group, "group");
    }
  } catch (const ConfigError&) {
    throw;
  } catch (const std::exception& error) {
    // Nothing but ConfigError leaves the loader: callers print one line and exit.
    throw ConfigError(one_line(path + ": " + error.what()));
  }
  return config;
}

Config load_config(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw ConfigError(one_line(path + ": cannot read: " + errno_text(errno)));
  std::string text;
  int error = 0;
  struct stat info {};
  if (::fstat(fd, &info) == 0 && S_ISDIR(info.st_mode)) {
    error = EISDIR;
  } else {
    std::array<char, 65536> buffer{};
    for (;;) {
      const ssize_t n = ::read(fd, buffer.data(), buffer.size());
      if (n > 0) {
        text.append(buffer.data(), static_cast<std::size_t>(n));
      } else if (n == 0) {
        break;
      } else if (errno != EINTR) {
        error = errno;
        break;
      }
    }
  }
  ::close(fd);
  if (error != 0) throw ConfigError(one_line(path + ": cannot read: " + errno_text(error)));
  return parse_config(text, path);
}

std::string describe_config(const Config& config) {
  constexpr std::string_view kCensored = "<censored>";
  try {
    const auto tls_json = [&](const TlsSettings& tls) {
      json out = json::object();
      out["key"] = tls.key;
      out["cert"] = tls.cert;
      out["ca"] = tls.ca;
      out["passphrase"] = tls.passphrase.empty() ? std::string() : std::string(kCensored);
      out["ciphers"] = tls.ciphers;
      out["secureProtocol"] = tls.secure_protocol;
      return out;
    };

    const ServerSettings& s = config.server;
    json server = json::object();
    server["debug"] = s.debug;
    server["workers"] = s.workers;
    server["maxSockets"] = s.max_sockets;
    server["tcpTimeout"] = s.tcp_timeout_s;
    server["deadBackendTTL"] = s.dead_backend_ttl_s;
    server["retryOnError"] = s.retry_on_error;
    server["accessLog"] = s.access_log ? json(*s.access_log) : json(nullptr);
    server["httpKeepAlive"] = s.http_keep_alive;
    server["deadBackendOn500"] = s.dead_backend_on_500;
    server["staticDir"] = s.static_dir ? json(*s.static_dir) : json(nullptr);
    server["lruCache"] = s.lru_cache
                             ? json{{"size", s.lru_cache->size}, {"ttl", s.lru_cache->ttl_seconds}}
                             : json(nullptr);
    server["memoryLimit"] = s.memory_limit_mb;
    server["memoryCheckInterval"] = s.memory_check_interval_s;
    server["gracefulWait"] = s.graceful_wait_s;
    server["backendTlsVerify"] = s.backend_tls_verify;
    server["routeCache"] = s.route_cache;
    server["headerTimeout"] = s.header_timeout_s;
    server["maxConnections"] = s.max_connections;
    server["redisTimeout"] = s.redis_timeout_s;
    server["cpuAffinity"] = s.cpu_affinity;
    server["cpuSpread"] = s.cpu_spread;
    json trusted = nullptr;
    if (s.trust_proxies) {
      trusted = json::array();
      for (const auto& range : *s.trust_proxies) trusted.push_back(range.text);
    }
    server["trustProxies"] = trusted;

    json http_binds = json::array();
    json https_binds = json::array();
    for (const ListenAddress& listener : config.listeners) {
      if (!listener.tls) {
        http_binds.push_back({{"address", listener.address}, {"port", listener.port}});
        continue;
      }
      json bind = tls_json(listener.tls_settings);
      bind["address"] = listener.address;
      bind["port"] = listener.port;
      https_binds.push_back(std::move(bind));
    }

    json https = tls_json(config.https);
    https["honorCipherOrder"] = config.https.honor_cipher_order;
    https["secureOptions"] = config.https.secure_options;
    https["certDir"] = config.cert_dir;
    https["bind"] = std::move(https_binds);

    json driver = json::array();
    for (const std::string& url : config.driver) driver.push_back(censor_driver_url(url));

    json out = json::object();
    out["server"] = std::move(server);
    out["http"] = json{{"bind", std::move(http_binds)}};
    out["https"] = std::move(https);
    out["driver"] = std::move(driver);
    out["user"] = config.user;
    out["group"] = config.group.empty() ? config.user : config.group;
    return out.dump(2, ' ', false, json::error_handler_t::replace);
  } catch (const std::exception& error) {
    throw ConfigError(one_line(config.source_path + ": " + error.what()));
  }
}

std::string default_config_path() {
  const char* flavor = std::getenv("SETTINGS_FLAVOR");
  if (flavor == nullptr || *flavor == '\0') return "config/config.json";
  return "config/config_" + std::string(flavor) + ".json";
}

}  // namespace hipache
