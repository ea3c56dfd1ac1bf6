// What the config loader's tests (config_*_test.cpp) share: parsing text as config/x.json,
// catching the one-line ConfigError, reading warnings, and a scratch directory of TLS files.
// Inline and outside an anonymous namespace: each test file uses only some of them, and an
// unused static function would fail the -Werror build.
#pragma once

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include "hipache/config.hpp"

namespace hipache::config_test {

inline constexpr const char* kPath = "config/x.json";

inline Config parse(const std::string& text) {
  return parse_config(text, kPath);
}

inline std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "<no error>";
}

inline std::string parse_error(const std::string& text) {
  return error_of([&] { parse(text); });
}

inline unsigned expected_cpus() {
  return std::max(1U, std::thread::hardware_concurrency());
}

inline bool has_warning(const Config& config, const std::string& line) {
  return std::find(config.warnings.begin(), config.warnings.end(), line) != config.warnings.end();
}

inline std::string all_warnings(const Config& config) {
  std::string text;
  for (const std::string& line : config.warnings) text += line + "\n";
  return text;
}

// A scratch directory with a readable key and certificate (their content is not checked here).
class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "hipache-config-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
    write("server.key", "key");
    write("server.crt", "cert");
    write("other.key", "key");
    write("other.crt", "cert");
    write("ca.pem", "ca");
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string write(const std::string& name, const std::string& content) const {
    std::ofstream(path_ / name, std::ios::binary) << content;
    return file(name);
  }

 private:
  std::filesystem::path path_;
};

}  // namespace hipache::config_test
