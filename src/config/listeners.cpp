// The listening side of the config: http and https sections, bind lists, TLS files, and the
// Hipache 0.3.x layout (server.port, server.address, server.address6, server.https).
#include "config/listeners.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/config_keys.hpp"

namespace hipache::config {
namespace {

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
};

// One entry of a bind list (or a legacy address), with the name to use in messages.
struct BindSource {
  json value;
  std::string name;
};

// The file keys of `object` (an https section or bind object) become the keys that messages
// about those files name.
void note_origins(const json& object, const std::string& prefix, TlsOrigins& origins) {
  if (find_set(object, "key")) origins.key = join_key(prefix, "key");
  if (find_set(object, "cert")) origins.cert = join_key(prefix, "cert");
  if (find_set(object, "ca")) origins.ca = join_key(prefix, "ca");
}

// Applies an https section (or the 0.3.x server.https) on top of what `section` holds, so that
// later sources win key by key.
void parse_https(const Reader& reader, const json& object, const std::string& prefix, bool legacy,
                 HttpsSection& section, Config& config) {
  std::vector<std::string_view> known = key_names(tls_keys(), "https");
  if (legacy) {
    known.emplace_back("port");
  } else {
    const auto own = key_names(config_keys(), "https");
    known.insert(known.end(), own.begin(), own.end());
  }
  reader.warn_unknown(object, prefix, known);
  if (const json* port = find_set(object, "port")) {
    section.port = reader.port(*port, join_key(prefix, "port"));
  }
  if (!legacy) {
    if (const json* bind = find_set(object, "bind")) section.bind = *bind;
    read_keys(reader, object, prefix, config_keys(), "https", config);
  }
  read_keys(reader, object, prefix, tls_keys(), "https", section.tls);
  note_origins(object, prefix, section.origins);
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
  std::vector<std::string_view> known = {"address", "port", "proxyProtocol"};
  if (https != nullptr) {
    const auto tls = key_names(tls_keys(), "https", true);
    known.insert(known.end(), tls.begin(), tls.end());
  }
  reader.warn_unknown(object, source.name, known);
  const json* address = find_set(object, "address");
  if (address == nullptr) reader.fail(join_key(source.name, "address"), "missing");
  listener.address = parse_address(reader, *address, join_key(source.name, "address"));
  if (const json* port = find_set(object, "port")) {
    listener.port = reader.port(*port, join_key(source.name, "port"));
  }
  if (const json* proxy = find_set(object, "proxyProtocol")) {
    listener.proxy_protocol = reader.boolean(*proxy, join_key(source.name, "proxyProtocol"));
  }
  if (https == nullptr) return listener;

  read_keys(reader, object, source.name, tls_keys(), "https", listener.tls_settings, true);
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
  if (source.value.is_object()) note_origins(source.value, source.name, origins);
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

}  // namespace

void parse_listeners(const Reader& reader, const json& root, const json* server, Config& config) {
  const json* http = reader.section(root, "http", "http");
  const json* https = reader.section(root, "https", "https");
  if (http != nullptr) reader.warn_unknown(*http, "http", key_names(config_keys(), "http"));

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
  std::uint16_t port = kDefaultHttpPort;
  if (legacy_port != nullptr) port = reader.port(*legacy_port, "server.port");
  if (http_port != nullptr) port = reader.port(*http_port, "http.port");
  std::vector<BindSource> http_sources;
  if (http_bind != nullptr) {
    http_sources = expand_bind(reader, *http_bind, "http.bind");
  } else if (legacy_layout) {
    http_sources = legacy_addresses(reader, legacy_address, legacy_address6);
  } else {
    http_sources.push_back({std::string(kDefaultHttpBind), "http.bind"});
  }

  // https: the 0.3.x section first, the current one on top of it
  HttpsSection section;
  if (legacy_https != nullptr && https == nullptr) {
    // A missing key is reported where this file keeps its TLS settings.
    section.origins = {"server.https.key", "server.https.cert", "server.https.ca"};
  }
  if (legacy_https != nullptr)
    parse_https(reader, *legacy_https, "server.https", true, section, config);
  if (https != nullptr) parse_https(reader, *https, "https", false, section, config);
  const std::uint16_t https_port = section.port.value_or(kDefaultHttpsPort);
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

  // admin: off unless the section is there (docs/operations.md, "Metrics and status page")
  if (const json* admin = reader.section(root, "admin", "admin")) {
    std::vector<std::string_view> known = key_names(config_keys(), "admin");
    const auto own = key_names(admin_keys(), "admin");
    known.insert(known.end(), own.begin(), own.end());
    reader.warn_unknown(*admin, "admin", known);
    std::uint16_t admin_port = kDefaultAdminPort;
    if (const json* value = find_set(*admin, "port"))
      admin_port = reader.port(*value, "admin.port");
    std::vector<BindSource> admin_sources;
    if (const json* bind = find_set(*admin, "bind")) {
      admin_sources = expand_bind(reader, *bind, "admin.bind");
      if (admin_sources.empty()) {
        reader.fail("admin.bind", "empty (remove the admin section to turn the listener off)");
      }
    } else {
      admin_sources.push_back({std::string(kDefaultAdminBind), "admin.bind"});
    }
    for (const BindSource& source : admin_sources) {
      ListenAddress listener = make_listener(reader, source, admin_port, nullptr);
      listener.admin = true;
      add(std::move(listener), source.name);
    }
    read_keys(reader, *admin, "admin", admin_keys(), "admin", config.admin);
  }

  config.https = section.tls;
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

}  // namespace hipache::config
