// The mechanism every key table is built with (config_keys.hpp): the readers and printers a
// row's member type picks, bounds, and member<>, the access of a row that fills one member.
// Included by the files that hold the tables (config_keys*.cpp) only.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "config/config_keys.hpp"

namespace hipache::config {

// A bound as an operator would write it: 3600, 0.01.
std::string number_text(double number);

[[noreturn]] void fail_range(const Reader& reader, const json& value, const std::string& key,
                             const Bounds& bounds);

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

// server.accessLogFormat.
inline constexpr std::pair<std::string_view, AccessLogFormat> kAccessLogFormats[] = {
    {"hipache", AccessLogFormat::hipache}, {"json", AccessLogFormat::json}};

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
inline constexpr bool kIsOptional = false;
template <class Value>
inline constexpr bool kIsOptional<std::optional<Value>> = true;

// The access of a row that fills one member. A null value keeps the default, except that an
// optional member takes it as "none" (server.accessLog: null disables the log).
template <auto Member, class Read = ReadValue,
          class Owner = typename MemberOf<decltype(Member)>::owner>
inline constexpr Access<Owner> member = {
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

}  // namespace hipache::config
