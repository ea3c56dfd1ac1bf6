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
// Each key is a row of config_keys.cpp; listeners.cpp reads the http and https sections; this
// file reads the top level, the server section and the driver with its legacy redis* keys.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "config/config_keys.hpp"
#include "config/listeners.hpp"
#include "config/reader.hpp"
#include "hipache/config.hpp"

namespace hipache {
namespace {

using namespace config;

unsigned cpu_count() {
  return std::max(1U, std::thread::hardware_concurrency());
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

void parse_server(const Reader& reader, const json* section, ServerSettings& server) {
  if (section != nullptr) {
    std::vector<std::string_view> known = key_names(server_keys(), "server");
    known.insert(known.end(), std::begin(kLegacyServerKeys), std::end(kLegacyServerKeys));
    reader.warn_unknown(*section, "server", known);
    read_keys(reader, *section, "server", server_keys(), "server", server);
  }
  // Hipache's default was a fixed 10; one worker per CPU is what that number was trying to be.
  if (server.workers == 0) server.workers = cpu_count();
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
    std::vector<std::string_view> known = key_names(config_keys(), "");
    known.insert(known.end(), {"server", "http", "https", "admin"});
    known.insert(known.end(), std::begin(kLegacyRedisKeys), std::end(kLegacyRedisKeys));
    reader.warn_unknown(root, "", known);

    const json* server = reader.section(root, "server", "server");
    parse_server(reader, server, config.server);
    parse_listeners(reader, root, server, config);
    parse_driver(reader, root, config);

    read_keys(reader, root, "", config_keys(), "", config);  // user, group
    if (config.group.empty()) config.group = config.user;
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
  try {
    json out = json::object();
    show_keys(server_keys(), "server", config.server, out["server"]);
    show_keys(config_keys(), "http", config, out["http"]);
    show_keys(tls_keys(), "https", config.https, out["https"]);
    show_keys(config_keys(), "https", config, out["https"]);
    show_keys(config_keys(), "", config, out);
    if (config.admin_enabled()) {
      show_keys(config_keys(), "admin", config, out["admin"]);
      show_keys(admin_keys(), "admin", config.admin, out["admin"]);
    }
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
