#include "config/reader.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <system_error>

#include "hipache/config.hpp"

namespace hipache::config {

std::string errno_text(int error) {
  return std::error_code(error, std::generic_category()).message();
}

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

const json* find_set(const json& object, const std::string& key) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

// O_NONBLOCK so that a FIFO cannot hang the loader.
std::optional<std::string> unreadable_file(const std::string& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return errno_text(errno);
  struct stat info {};
  const bool is_directory = ::fstat(fd, &info) == 0 && S_ISDIR(info.st_mode);
  ::close(fd);
  if (is_directory) return errno_text(EISDIR);
  return std::nullopt;
}

void Reader::fail(const std::string& key, const std::string& what) const {
  throw ConfigError(one_line(path_ + ": " + key + ": " + what));
}

void Reader::warn(const std::string& what) const {
  warnings_.push_back(one_line(path_ + ": " + what));
}

void Reader::warn_unknown(const json& object, const std::string& prefix,
                          std::span<const std::string_view> known) const {
  for (const auto& [key, value] : object.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      warn("unknown key " + join_key(prefix, key) + " (ignored)");
    }
  }
}

const json* Reader::section(const json& parent, const std::string& key,
                            const std::string& name) const {
  const json* value = find_set(parent, key);
  if (value != nullptr && !value->is_object()) {
    fail(name, "expected an object, got " + describe(*value));
  }
  return value;
}

bool Reader::boolean(const json& value, const std::string& key) const {
  if (!value.is_boolean()) fail(key, "expected true or false, got " + describe(value));
  return value.get<bool>();
}

std::uint64_t Reader::whole(const json& value, const std::string& key, std::uint64_t max) const {
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

double Reader::non_negative(const json& value, const std::string& key) const {
  if (!value.is_number() || !(value.get<double>() >= 0)) {
    fail(key, "expected a non-negative number, got " + describe(value));
  }
  return value.get<double>();
}

std::string Reader::string(const json& value, const std::string& key) const {
  if (!value.is_string()) fail(key, "expected a string, got " + describe(value));
  return value.get<std::string>();
}

std::uint16_t Reader::port(const json& value, const std::string& key) const {
  if (!value.is_number()) fail(key, "expected a port number (1-65535), got " + describe(value));
  const std::uint64_t number = whole(value, key, 65535);
  if (number == 0) fail(key, "expected a port number (1-65535), got 0");
  return static_cast<std::uint16_t>(number);
}

}  // namespace hipache::config
