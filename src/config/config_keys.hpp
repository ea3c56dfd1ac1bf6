// The table of configuration keys: each key of the file is one row (JSON name, the member it
// fills, bounds, one doc line), and loading, unknown-key warnings, --dry printing and the docs
// test all walk these rows. A key's default is its member's initializer in config.hpp, so a
// Config built in code and one loaded from "{}" cannot disagree.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/reader.hpp"
#include "hipache/config.hpp"

namespace hipache::config {

inline constexpr std::uint16_t kDefaultHttpPort = 80;
inline constexpr std::uint16_t kDefaultHttpsPort = 443;
inline constexpr std::string_view kDefaultHttpBind = "127.0.0.1";
inline constexpr std::uint16_t kDefaultAdminPort = 9090;
inline constexpr std::string_view kDefaultAdminBind = "127.0.0.1";
inline constexpr unsigned kMaxFrontendMetrics = 64;  // metrics::kFrontendEntries
inline constexpr double kUnbounded = std::numeric_limits<double>::infinity();

// The range a number must be in. `note` ends the "must be at least / between" message.
struct Bounds {
  double min = 0;
  double max = kMaxCount;
  std::string_view note;
};

// How a row reads its value into, and prints it from, the struct that holds its member.
// `read` gets null values too (an optional member takes null as "none"); nullptr = the key is
// read by its section's own code (binds, driver, ports). `show` nullptr = not printed by --dry.
template <class Owner>
struct Access {
  void (*read)(const Reader&, const json& value, const std::string& key, const Bounds&,
               Owner&) = nullptr;
  json (*show)(const Owner&) = nullptr;
};

template <class Owner>
struct Key {
  std::string_view section;  // dotted JSON path of the object holding it; "" = top level
  std::string_view name;
  Access<Owner> access;
  std::string_view doc;
  Bounds bounds{};
  bool secret = false;    // printed by --dry as "<censored>" when set
  bool per_bind = false;  // TLS keys an https bind object may override
  bool listed = true;     // false: accepted for compatibility, absent from the docs' key tables
  // The default as docs/configuration.md words it, where it is not a value (e.g. "number of CPUs").
  std::string_view doc_default = {};
  // The default, for keys with no member of their own (ports); otherwise show(Owner{}).
  json (*fallback)() = nullptr;

  // Row modifiers, so that a row stays one readable line.
  constexpr Key within(Bounds range) const {
    return with([&](Key& k) { k.bounds = range; });
  }
  constexpr Key censored() const {
    return with([](Key& k) { k.secret = true; });
  }
  constexpr Key per_listener() const {
    return with([](Key& k) { k.per_bind = true; });
  }
  constexpr Key unlisted() const {
    return with([](Key& k) { k.listed = false; });
  }
  constexpr Key documented_as(std::string_view text) const {
    return with([&](Key& k) { k.doc_default = text; });
  }
  constexpr Key defaults_to(json (*value)()) const {
    return with([&](Key& k) { k.fallback = value; });
  }

 private:
  template <class Change>
  constexpr Key with(Change change) const {
    Key copy = *this;
    change(copy);
    return copy;
  }
};

std::span<const Key<ServerSettings>> server_keys();
std::span<const Key<LruCacheSettings>> lru_cache_keys();
std::span<const Key<ActiveHealthCheckSettings>> active_health_check_keys();
std::span<const Key<TlsSettings>> tls_keys();      // https, server.https and https bind objects
std::span<const Key<Config>> config_keys();        // the rest: http, https, admin, top level
std::span<const Key<AdminSettings>> admin_keys();  // admin.token, admin.frontendMetrics
inline constexpr std::string_view kLegacyServerKeys[] = {"port", "address", "address6", "https"};
inline constexpr std::string_view kLegacyRedisKeys[] = {
    "redisHost",       "redisPort",       "redisPassword",       "redisDatabase",
    "redisMasterHost", "redisMasterPort", "redisMasterPassword", "redisMasterDatabase"};

// The names of `keys` in `section` (all of them when `per_bind_only` is false).
template <class Owner>
std::vector<std::string_view> key_names(std::span<const Key<Owner>> keys, std::string_view section,
                                        bool per_bind_only = false) {
  std::vector<std::string_view> names;
  for (const Key<Owner>& key : keys) {
    if (key.section == section && (key.per_bind || !per_bind_only)) names.push_back(key.name);
  }
  return names;
}

// Reads the keys of `section` that `object` holds into `out`; `prefix` names them in messages.
template <class Owner>
void read_keys(const Reader& reader, const json& object, const std::string& prefix,
               std::span<const Key<Owner>> keys, std::string_view section, Owner& out,
               bool per_bind_only = false) {
  for (const Key<Owner>& key : keys) {
    if (key.section != section || key.access.read == nullptr) continue;
    if (per_bind_only && !key.per_bind) continue;
    if (const auto it = object.find(key.name); it != object.end()) {
      key.access.read(reader, *it, join_key(prefix, key.name), key.bounds, out);
    }
  }
}

json show_value(const json& value, bool secret);

// Adds the printed keys of `section` to `out` (for --dry).
template <class Owner>
void show_keys(std::span<const Key<Owner>> keys, std::string_view section, const Owner& owner,
               json& out, bool per_bind_only = false) {
  for (const Key<Owner>& key : keys) {
    if (key.section != section || key.access.show == nullptr) continue;
    if (per_bind_only && !key.per_bind) continue;
    out[std::string(key.name)] = show_value(key.access.show(owner), key.secret);
  }
}

// Every key of every table, for checking the documentation.
struct KeyInfo {
  std::string section;
  std::string name;
  json default_value;
  std::string_view doc_default;
  bool listed;
};
std::vector<KeyInfo> all_keys();

}  // namespace hipache::config
