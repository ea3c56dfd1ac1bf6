// Typed access to the parsed JSON config, shared by the loader's parts. Every failure is one
// ConfigError line "<file>: <dotted key>: <what>", so an operator can fix it without the source.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hipache::config {

using nlohmann::json;

// Durations and counts are handed to code that may use int or milliseconds; this bound keeps
// every conversion exact.
inline constexpr std::uint64_t kMaxCount = 2147483647;

std::string errno_text(int error);

// Messages end up as single log lines and single lines on a terminal, whatever a file name or a
// value contains.
std::string one_line(std::string text);

std::string join_key(const std::string& prefix, std::string_view key);
std::string index_key(const std::string& name, std::size_t index);

// A value as the operator wrote it, short enough for one line.
std::string describe(const json& value);

// A key that is absent or null is "not set": the default applies. Hipache's defaults filled in
// only undefined keys, but a null left in a file almost always means "no opinion".
const json* find_set(const json& object, const std::string& key);

// Why a file cannot be read, or nullopt when it can.
std::optional<std::string> unreadable_file(const std::string& file);

class Reader {
 public:
  Reader(const std::string& path, std::vector<std::string>& warnings)
      : path_(path), warnings_(warnings) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what) const;
  void warn(const std::string& what) const;
  // One warning per key of `object` that is not in `known`.
  void warn_unknown(const json& object, const std::string& prefix,
                    std::span<const std::string_view> known) const;

  // An object, or nullptr when absent or null.
  const json* section(const json& parent, const std::string& key, const std::string& name) const;

  bool boolean(const json& value, const std::string& key) const;
  std::uint64_t whole(const json& value, const std::string& key, std::uint64_t max) const;
  double non_negative(const json& value, const std::string& key) const;
  std::string string(const json& value, const std::string& key) const;
  std::uint16_t port(const json& value, const std::string& key) const;

 private:
  const std::string& path_;
  std::vector<std::string>& warnings_;
};

}  // namespace hipache::config
