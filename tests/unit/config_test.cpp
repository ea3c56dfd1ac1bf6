// The config loader: defaults, the current and legacy layouts, every error message's file and key,
// warnings, describe_config's censoring, and the default path.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "hipache/config.hpp"

namespace hipache {
namespace {

using nlohmann::json;

constexpr const char* kPath = "config/x.json";

Config parse(const std::string& text) {
  return parse_config(text, kPath);
}

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "<no error>";
}

std::string parse_error(const std::string& text) {
  return error_of([&] { parse(text); });
}

unsigned expected_cpus() {
  return std::max(1U, std::thread::hardware_concurrency());
}

bool has_warning(const Config& config, const std::string& line) {
  return std::find(config.warnings.begin(), config.warnings.end(), line) != config.warnings.end();
}

std::string all_warnings(const Config& config) {
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

// ------------------------------------------------------------------------------------------
// Defaults

TEST(ConfigDefaults, EmptyObjectGivesEveryDefault) {
  const Config config = parse("{}");
  EXPECT_EQ(config.source_path, kPath);
  const ServerSettings& s = config.server;
  EXPECT_FALSE(s.debug);
  EXPECT_EQ(s.workers, expected_cpus());
  EXPECT_EQ(s.max_sockets, 100U);
  EXPECT_EQ(s.tcp_timeout_s, 30U);
  EXPECT_EQ(s.dead_backend_ttl_s, 30U);
  EXPECT_EQ(s.retry_on_error, 3U);
  ASSERT_TRUE(s.access_log.has_value());
  EXPECT_EQ(*s.access_log, "/var/log/hipache/access.log");
  EXPECT_FALSE(s.http_keep_alive);
  EXPECT_TRUE(s.dead_backend_on_500);
  EXPECT_FALSE(s.static_dir.has_value());
  EXPECT_FALSE(s.lru_cache.has_value());
  EXPECT_EQ(s.memory_limit_mb, 200U);
  EXPECT_EQ(s.memory_check_interval_s, 10U);
  EXPECT_EQ(s.graceful_wait_s, 120U);
  EXPECT_TRUE(s.backend_tls_verify);

  ASSERT_EQ(config.listeners.size(), 1U);
  EXPECT_EQ(config.listeners[0].address, "127.0.0.1");
  EXPECT_EQ(config.listeners[0].port, 80);
  EXPECT_FALSE(config.listeners[0].tls);

  EXPECT_TRUE(config.https.key.empty());
  EXPECT_TRUE(config.https.cert.empty());
  EXPECT_TRUE(config.https.ca.empty());
  EXPECT_TRUE(config.https.passphrase.empty());
  EXPECT_TRUE(config.https.ciphers.empty());
  EXPECT_TRUE(config.https.honor_cipher_order);
  EXPECT_TRUE(config.https.secure_protocol.empty());
  EXPECT_EQ(config.https.secure_options, 0U);
  EXPECT_TRUE(config.cert_dir.empty());

  EXPECT_EQ(config.driver, std::vector<std::string>{"redis:"});
  EXPECT_EQ(config.read_endpoint.host, "127.0.0.1");
  EXPECT_EQ(config.read_endpoint.port, 6379);
  EXPECT_EQ(config.read_endpoint.database, 0);
  EXPECT_TRUE(config.read_endpoint.password.empty());
  EXPECT_TRUE(config.read_endpoint.prefix.empty());
  EXPECT_EQ(config.write_endpoint.host, "127.0.0.1");
  EXPECT_EQ(config.write_endpoint.port, 6379);

  EXPECT_EQ(config.user, "www-data");
  EXPECT_EQ(config.group, "www-data");
  EXPECT_TRUE(config.warnings.empty()) << all_warnings(config);
}

TEST(ConfigDefaults, EmptySectionsGiveDefaultsToo) {
  const Config config = parse(R"({"server": {}, "http": {}, "https": {}})");
  EXPECT_EQ(config.server.workers, expected_cpus());
  ASSERT_EQ(config.listeners.size(), 1U);
  EXPECT_EQ(config.listeners[0].address, "127.0.0.1");
  EXPECT_EQ(config.listeners[0].port, 80);
  EXPECT_TRUE(config.warnings.empty()) << all_warnings(config);
}

TEST(ConfigDefaults, NullMeansDefault) {
  const Config config = parse(R"({"server": {"tcpTimeout": null, "workers": null, "debug": null},
                "http": {"port": null, "bind": null}, "driver": null, "user": null})");
  EXPECT_EQ(config.server.tcp_timeout_s, 30U);
  EXPECT_EQ(config.server.workers, expected_cpus());
  EXPECT_FALSE(config.server.debug);
  EXPECT_EQ(config.listeners[0].address, "127.0.0.1");
  EXPECT_EQ(config.listeners[0].port, 80);
  EXPECT_EQ(config.driver, std::vector<std::string>{"redis:"});
  EXPECT_EQ(config.user, "www-data");
}

TEST(ConfigDefaults, WorkersZeroMeansCpuCount) {
  EXPECT_EQ(parse(R"({"server": {"workers": 0}})").server.workers, expected_cpus());
  EXPECT_EQ(parse(R"({"server": {"workers": 3}})").server.workers, 3U);
}

// ------------------------------------------------------------------------------------------
// server section

TEST(ConfigServer, EveryKeyIsRead) {
  const Config config = parse(R"({"server": {
      "debug": true, "workers": 4, "maxSockets": 7, "tcpTimeout": 0, "deadBackendTTL": 12,
      "retryOnError": 0, "accessLog": "/tmp/a.log", "httpKeepAlive": true,
      "deadBackendOn500": false, "staticDir": "/srv/static", "lruCache": {"size": 5, "ttl": 2.5},
      "memoryLimit": 0, "memoryCheckInterval": 3, "gracefulWait": 0, "backendTlsVerify": false,
      "cpuAffinity": true, "cpuSpread": false}})");
  const ServerSettings& s = config.server;
  EXPECT_TRUE(s.debug);
  EXPECT_EQ(s.workers, 4U);
  EXPECT_EQ(s.max_sockets, 7U);
  EXPECT_EQ(s.tcp_timeout_s, 0U);
  EXPECT_EQ(s.dead_backend_ttl_s, 12U);
  EXPECT_EQ(s.retry_on_error, 0U);
  EXPECT_EQ(s.access_log, "/tmp/a.log");
  EXPECT_TRUE(s.http_keep_alive);
  EXPECT_FALSE(s.dead_backend_on_500);
  EXPECT_EQ(s.static_dir, "/srv/static");
  ASSERT_TRUE(s.lru_cache.has_value());
  EXPECT_EQ(s.lru_cache->size, 5U);
  EXPECT_DOUBLE_EQ(s.lru_cache->ttl_seconds, 2.5);
  EXPECT_EQ(s.memory_limit_mb, 0U);
  EXPECT_EQ(s.memory_check_interval_s, 3U);
  EXPECT_EQ(s.graceful_wait_s, 0U);
  EXPECT_FALSE(s.backend_tls_verify);
  EXPECT_TRUE(s.cpu_affinity);
  EXPECT_FALSE(parse("{}").server.cpu_affinity);  // like nginx: workers float unless asked
  EXPECT_FALSE(s.cpu_spread);
  EXPECT_TRUE(parse("{}").server.cpu_spread);  // floating workers move apart unless asked not to
  EXPECT_TRUE(config.warnings.empty()) << all_warnings(config);
}

TEST(ConfigServer, AccessLogForms) {
  EXPECT_FALSE(parse(R"({"server": {"accessLog": null}})").server.access_log.has_value());
  EXPECT_FALSE(parse(R"({"server": {"accessLog": ""}})").server.access_log.has_value());
  EXPECT_EQ(parse(R"({"server": {"accessLog": "-"}})").server.access_log, "-");
  EXPECT_EQ(parse(R"({"server": {"accessLog": "stdout"}})").server.access_log, "stdout");
  EXPECT_EQ(parse_error(R"({"server": {"accessLog": false}})"),
            "config/x.json: server.accessLog: expected a string, got false");
}

TEST(ConfigServer, StaticDirForms) {
  EXPECT_FALSE(parse(R"({"server": {"staticDir": null}})").server.static_dir.has_value());
  EXPECT_FALSE(parse(R"({"server": {"staticDir": ""}})").server.static_dir.has_value());
  EXPECT_EQ(parse(R"({"server": {"staticDir": "/s"}})").server.static_dir, "/s");
  EXPECT_EQ(parse_error(R"({"server": {"staticDir": 1}})"),
            "config/x.json: server.staticDir: expected a string, got 1");
}

TEST(ConfigServer, LruCacheForms) {
  EXPECT_FALSE(parse(R"({"server": {"lruCache": null}})").server.lru_cache.has_value());
  const Config defaults = parse(R"({"server": {"lruCache": {}}})");
  ASSERT_TRUE(defaults.server.lru_cache.has_value());
  EXPECT_EQ(defaults.server.lru_cache->size, 1000U);
  EXPECT_DOUBLE_EQ(defaults.server.lru_cache->ttl_seconds, 5);
  EXPECT_EQ(parse_error(R"({"server": {"lruCache": {"size": 0}}})"),
            "config/x.json: server.lruCache.size: must be at least 1");
  EXPECT_EQ(parse_error(R"({"server": {"lruCache": {"ttl": -1}}})"),
            "config/x.json: server.lruCache.ttl: expected a non-negative number, got -1");
  EXPECT_EQ(parse_error(R"({"server": {"lruCache": {"ttl": 1e300}}})"),
            "config/x.json: server.lruCache.ttl: must be at most 2147483647, got 1e+300");
  EXPECT_EQ(
      parse_error(R"({"server": {"lruCache": 5}})"),
      "config/x.json: server.lruCache: expected null or {\"size\": ..., \"ttl\": ...}, got 5");
}

TEST(ConfigServer, NumberErrorsNameFileAndKey) {
  EXPECT_EQ(parse_error(R"({"server": {"tcpTimeout": "abc"}})"),
            "config/x.json: server.tcpTimeout: expected a non-negative number, got \"abc\"");
  EXPECT_EQ(parse_error(R"({"server": {"deadBackendTTL": -5}})"),
            "config/x.json: server.deadBackendTTL: expected a non-negative number, got -5");
  EXPECT_EQ(parse_error(R"({"server": {"retryOnError": 1.5}})"),
            "config/x.json: server.retryOnError: expected a whole number, got 1.5");
  EXPECT_EQ(parse_error(R"({"server": {"memoryLimit": -0.5}})"),
            "config/x.json: server.memoryLimit: expected a non-negative number, got -0.5");
  EXPECT_EQ(parse_error(R"({"server": {"gracefulWait": [1]}})"),
            "config/x.json: server.gracefulWait: expected a non-negative number, got an array");
  EXPECT_EQ(parse_error(R"({"server": {"tcpTimeout": 4294967296}})"),
            "config/x.json: server.tcpTimeout: must be at most 2147483647, got 4294967296");
  EXPECT_EQ(parse_error(R"({"server": {"workers": 5000}})"),
            "config/x.json: server.workers: must be at most 1024, got 5000");
  EXPECT_EQ(parse_error(R"({"server": {"maxSockets": 0}})"),
            "config/x.json: server.maxSockets: must be at least 1");
  EXPECT_EQ(parse_error(R"({"server": {"memoryCheckInterval": 0}})"),
            "config/x.json: server.memoryCheckInterval: must be at least 1 (use memoryLimit 0 to "
            "disable)");
  // A whole number written as a float is fine.
  EXPECT_EQ(parse(R"({"server": {"tcpTimeout": 45.0}})").server.tcp_timeout_s, 45U);
}

TEST(ConfigServer, BooleanErrorsNameFileAndKey) {
  EXPECT_EQ(parse_error(R"({"server": {"debug": "yes"}})"),
            "config/x.json: server.debug: expected true or false, got \"yes\"");
  EXPECT_EQ(parse_error(R"({"server": {"httpKeepAlive": 1}})"),
            "config/x.json: server.httpKeepAlive: expected true or false, got 1");
  EXPECT_EQ(parse_error(R"({"server": {"deadBackendOn500": {}}})"),
            "config/x.json: server.deadBackendOn500: expected true or false, got an object");
  EXPECT_EQ(parse_error(R"({"server": {"backendTlsVerify": "false"}})"),
            "config/x.json: server.backendTlsVerify: expected true or false, got \"false\"");
  EXPECT_EQ(parse_error(R"({"server": {"cpuAffinity": "auto"}})"),
            "config/x.json: server.cpuAffinity: expected true or false, got \"auto\"");
  EXPECT_EQ(parse_error(R"({"server": {"cpuSpread": 0}})"),
            "config/x.json: server.cpuSpread: expected true or false, got 0");
}

TEST(ConfigServer, SectionMustBeAnObject) {
  EXPECT_EQ(parse_error(R"({"server": 3})"), "config/x.json: server: expected an object, got 3");
  EXPECT_EQ(parse_error(R"({"http": []})"),
            "config/x.json: http: expected an object, got an array");
  EXPECT_EQ(parse_error(R"({"https": "on"})"),
            "config/x.json: https: expected an object, got \"on\"");
}

TEST(ConfigServer, UniqueIdHeaderIsAcceptedButUnsupported) {
  EXPECT_TRUE(parse(R"({"server": {"uniqueIdHeader": null}})").warnings.empty());
  const Config config = parse(R"({"server": {"uniqueIdHeader": "X-Request-Id"}})");
  EXPECT_EQ(
      config.warnings,
      std::vector<std::string>{"config/x.json: server.uniqueIdHeader is not supported (ignored)"});
}

// ------------------------------------------------------------------------------------------
// JSON and top level

TEST(ConfigJson, InvalidJsonIsOneLineNamingTheFile) {
  const std::string message = parse_error("{\n  \"server\": {\n    \"debug\": tru\n  }\n}");
  EXPECT_EQ(message.rfind("config/x.json: invalid JSON: ", 0), 0U) << message;
  EXPECT_NE(message.find("at line 4, column 0"), std::string::npos) << message;
  EXPECT_EQ(message.find("json.exception"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

TEST(ConfigJson, NumberTooLargeForADoubleIsInvalidJson) {
  // nlohmann reports this as out_of_range, not parse_error: still one ConfigError line.
  const std::string message = parse_error("{\"server\": {\"workers\": 1e400}}");
  EXPECT_EQ(message.rfind("config/x.json: invalid JSON: ", 0), 0U) << message;
  EXPECT_EQ(message.find("json.exception"), std::string::npos) << message;
}

TEST(ConfigJson, EmptyTextIsInvalidJson) {
  EXPECT_EQ(parse_error("").rfind("config/x.json: invalid JSON: ", 0), 0U);
}

TEST(ConfigJson, TopLevelMustBeAnObject) {
  EXPECT_EQ(parse_error("[1, 2]"),
            "config/x.json: expected a JSON object at the top level, got an array");
  EXPECT_EQ(parse_error("42"), "config/x.json: expected a JSON object at the top level, got 42");
}

TEST(ConfigJson, UnknownKeysAreWarningsAtEveryLevel) {
  const Config config = parse(R"({
      "colour": "blue",
      "server": {"debug": false, "fooBar": 1, "lruCache": {"size": 2, "max": 3}},
      "http": {"port": 8080, "binds": []},
      "https": {"keyFile": "x"},
      "api": {}})");
  EXPECT_TRUE(has_warning(config, "config/x.json: unknown key colour (ignored)"));
  EXPECT_TRUE(has_warning(config, "config/x.json: unknown key api (ignored)"));
  EXPECT_TRUE(has_warning(config, "config/x.json: unknown key server.fooBar (ignored)"));
  EXPECT_TRUE(has_warning(config, "config/x.json: unknown key server.lruCache.max (ignored)"));
  EXPECT_TRUE(has_warning(config, "config/x.json: unknown key http.binds (ignored)"));
  EXPECT_TRUE(has_warning(config, "config/x.json: unknown key https.keyFile (ignored)"));
  EXPECT_EQ(config.warnings.size(), 6U) << all_warnings(config);
  EXPECT_EQ(config.listeners[0].port, 8080);
}

TEST(ConfigJson, MessagesStayOnOneLineWhateverThePath) {
  const std::string message =
      error_of([] { parse_config(R"({"server": {"debug": 1}})", "odd\nname.json"); });
  EXPECT_EQ(message, "odd name.json: server.debug: expected true or false, got 1");
}

// ------------------------------------------------------------------------------------------
// http binds

TEST(ConfigBind, SingleString) {
  const Config config = parse(R"({"http": {"bind": "0.0.0.0", "port": 8080}})");
  ASSERT_EQ(config.listeners.size(), 1U);
  EXPECT_EQ(config.listeners[0].address, "0.0.0.0");
  EXPECT_EQ(config.listeners[0].port, 8080);
  EXPECT_FALSE(config.listeners[0].tls);
}

TEST(ConfigBind, ListOfStringsIncludingIpv6) {
  const Config config = parse(R"({"http": {"bind": ["127.0.0.1", "::1", "[::]", "[fe80::1]"]}})");
  ASSERT_EQ(config.listeners.size(), 4U);
  EXPECT_EQ(config.listeners[0].address, "127.0.0.1");
  EXPECT_EQ(config.listeners[1].address, "::1");
  EXPECT_EQ(config.listeners[2].address, "::");
  EXPECT_EQ(config.listeners[3].address, "fe80::1");
  for (const ListenAddress& listener : config.listeners) EXPECT_EQ(listener.port, 80);
}

TEST(ConfigBind, AddressesAreCanonical) {
  const Config config = parse(R"({"http": {"bind": ["0:0::1", "fe80::1%eth0", "localhost"]}})");
  ASSERT_EQ(config.listeners.size(), 3U);
  EXPECT_EQ(config.listeners[0].address, "::1");
  EXPECT_EQ(config.listeners[1].address, "fe80::1%eth0");
  EXPECT_EQ(config.listeners[2].address, "127.0.0.1");
}

TEST(ConfigBind, ObjectsWithPorts) {
  const Config config = parse(R"({"http": {"port": 81, "bind": [
      {"address": "10.1.2.3", "port": 8000}, {"address": "[::1]"}, "127.0.0.1"]}})");
  ASSERT_EQ(config.listeners.size(), 3U);
  EXPECT_EQ(config.listeners[0].address, "10.1.2.3");
  EXPECT_EQ(config.listeners[0].port, 8000);
  EXPECT_EQ(config.listeners[1].address, "::1");
  EXPECT_EQ(config.listeners[1].port, 81);
  EXPECT_EQ(config.listeners[2].port, 81);
}

TEST(ConfigBind, SingleObject) {
  const Config config = parse(R"({"http": {"bind": {"address": "::", "port": 8080}}})");
  ASSERT_EQ(config.listeners.size(), 1U);
  EXPECT_EQ(config.listeners[0].address, "::");
  EXPECT_EQ(config.listeners[0].port, 8080);
}

TEST(ConfigBind, UnknownKeyInBindObjectIsAWarning) {
  const Config config = parse(R"({"http": {"bind": [{"address": "127.0.0.1", "backlog": 5}]}})");
  EXPECT_EQ(config.warnings,
            std::vector<std::string>{"config/x.json: unknown key http.bind[0].backlog (ignored)"});
}

TEST(ConfigBind, Errors) {
  EXPECT_EQ(parse_error(R"({"http": {"bind": ["127.0.0.1", "example.com"]}})"),
            "config/x.json: http.bind[1]: \"example.com\" is not an IP address (host names are "
            "not resolved; use an address such as 0.0.0.0 or ::)");
  EXPECT_EQ(parse_error(R"({"http": {"bind": "127.0.0.1:8080"}})"),
            "config/x.json: http.bind: \"127.0.0.1:8080\" is not an IP address (give the port "
            "with {\"address\": ..., \"port\": ...})");
  EXPECT_EQ(parse_error(R"({"http": {"bind": [{"address": "[::1]:80"}]}})"),
            "config/x.json: http.bind[0].address: \"[::1]:80\" is not an IP address (give the "
            "port with {\"address\": ..., \"port\": ...})");
  EXPECT_EQ(parse_error(R"({"http": {"bind": [{"port": 80}]}})"),
            "config/x.json: http.bind[0].address: missing");
  EXPECT_EQ(parse_error(R"({"http": {"bind": [17]}})"),
            "config/x.json: http.bind[0]: expected an IP address, got 17");
  EXPECT_EQ(parse_error(R"({"http": {"bind": 17}})"),
            "config/x.json: http.bind: expected an address, a list of addresses or a list of "
            "{\"address\", \"port\"} objects, got 17");
  EXPECT_EQ(parse_error(R"({"http": {"bind": ["999.1.1.1"]}})"),
            "config/x.json: http.bind[0]: \"999.1.1.1\" is not an IP address (host names are not "
            "resolved; use an address such as 0.0.0.0 or ::)");
}

TEST(ConfigBind, PortErrors) {
  EXPECT_EQ(parse_error(R"({"http": {"port": 0}})"),
            "config/x.json: http.port: expected a port number (1-65535), got 0");
  EXPECT_EQ(parse_error(R"({"http": {"port": 65536}})"),
            "config/x.json: http.port: must be at most 65535, got 65536");
  EXPECT_EQ(parse_error(R"({"http": {"port": "80"}})"),
            "config/x.json: http.port: expected a port number (1-65535), got \"80\"");
  EXPECT_EQ(parse_error(R"({"http": {"port": -1}})"),
            "config/x.json: http.port: expected a non-negative number, got -1");
  EXPECT_EQ(parse_error(R"({"http": {"bind": [{"address": "::", "port": 70000}]}})"),
            "config/x.json: http.bind[0].port: must be at most 65535, got 70000");
}

TEST(ConfigBind, DuplicateSocketIsAnError) {
  EXPECT_EQ(
      parse_error(R"({"http": {"bind": ["127.0.0.1", {"address": "127.0.0.1", "port": 80}]}})"),
      "config/x.json: http.bind[1]: 127.0.0.1 port 80 is already used by http.bind[0]");
  EXPECT_EQ(parse_error(R"({"http": {"bind": ["::1", "0:0:0:0:0:0:0:1"]}})"),
            "config/x.json: http.bind[1]: ::1 port 80 is already used by http.bind[0]");
}

TEST(ConfigBind, NothingToListenOnIsAnError) {
  EXPECT_EQ(parse_error(R"({"http": {"bind": []}})"),
            "config/x.json: http.bind: nothing to listen on (http.bind and https.bind are both "
            "empty)");
}

// ------------------------------------------------------------------------------------------
// https

class ConfigHttps : public ::testing::Test {
 protected:
  // A config with an https section holding the temp key and cert, plus `extra` keys.
  Config parse_https(json https, json root = json::object()) {
    if (!https.contains("key")) https["key"] = dir_.file("server.key");
    if (!https.contains("cert")) https["cert"] = dir_.file("server.crt");
    root["https"] = std::move(https);
    return parse(root.dump());
  }
  std::string https_error(json https, json root = json::object()) {
    return error_of([&] { parse_https(std::move(https), std::move(root)); });
  }

  TempDir dir_;
};

TEST_F(ConfigHttps, SectionWithoutBindsNeedsNoKey) {
  const Config config = parse(R"({"https": {"port": 8443, "ciphers": "HIGH"}})");
  ASSERT_EQ(config.listeners.size(), 1U);
  EXPECT_FALSE(config.listeners[0].tls);
  EXPECT_EQ(config.https.ciphers, "HIGH");
}

TEST_F(ConfigHttps, ListenersInheritTheSection) {
  const Config config = parse_https({{"bind", {"0.0.0.0", "::"}},
                                     {"port", 8443},
                                     {"ca", dir_.file("ca.pem")},
                                     {"passphrase", "secret"},
                                     {"ciphers", "ECDHE+AESGCM"},
                                     {"honorCipherOrder", false},
                                     {"secureProtocol", "TLSv1_2_method"},
                                     {"secureOptions", 33554432}});
  ASSERT_EQ(config.listeners.size(), 3U);  // the default http bind, then the two https ones
  EXPECT_FALSE(config.listeners[0].tls);
  for (std::size_t i = 1; i < 3; ++i) {
    const ListenAddress& listener = config.listeners[i];
    EXPECT_TRUE(listener.tls);
    EXPECT_EQ(listener.port, 8443);
    EXPECT_EQ(listener.tls_settings.key, dir_.file("server.key"));
    EXPECT_EQ(listener.tls_settings.cert, dir_.file("server.crt"));
    EXPECT_EQ(listener.tls_settings.ca, std::vector<std::string>{dir_.file("ca.pem")});
    EXPECT_EQ(listener.tls_settings.passphrase, "secret");
    EXPECT_EQ(listener.tls_settings.ciphers, "ECDHE+AESGCM");
    EXPECT_FALSE(listener.tls_settings.honor_cipher_order);
    EXPECT_EQ(listener.tls_settings.secure_protocol, "TLSv1_2_method");
    EXPECT_EQ(listener.tls_settings.secure_options, 33554432U);
  }
  EXPECT_EQ(config.listeners[1].address, "0.0.0.0");
  EXPECT_EQ(config.listeners[2].address, "::");
  EXPECT_EQ(config.https.key, dir_.file("server.key"));
  EXPECT_EQ(config.https.passphrase, "secret");
  EXPECT_TRUE(config.warnings.empty()) << all_warnings(config);
}

TEST_F(ConfigHttps, DefaultPortIs443) {
  const Config config = parse_https({{"bind", "127.0.0.1"}});
  ASSERT_EQ(config.listeners.size(), 2U);
  EXPECT_EQ(config.listeners[1].port, 443);
  EXPECT_TRUE(config.listeners[1].tls);
}

TEST_F(ConfigHttps, BindObjectsOverrideTlsMaterial) {
  const Config config = parse_https(
      {{"passphrase", "section-pass"},
       {"bind",
        {{{"address", "127.0.0.1"}, {"port", 8443}},
         {{"address", "[::1]"},
          {"port", 9443},
          {"key", dir_.file("other.key")},
          {"cert", dir_.file("other.crt")},
          {"ca", {dir_.file("ca.pem"), dir_.file("ca.pem")}},
          {"ciphers", "HIGH"},
          {"secureProtocol", "TLS_server_method"}},
         {{"address", "127.0.0.2"}, {"key", dir_.file("other.key")}, {"passphrase", "own"}}}}});
  ASSERT_EQ(config.listeners.size(), 4U);
  const TlsSettings& inherited = config.listeners[1].tls_settings;
  EXPECT_EQ(config.listeners[1].port, 8443);
  EXPECT_EQ(inherited.key, dir_.file("server.key"));
  EXPECT_EQ(inherited.passphrase, "section-pass");

  const ListenAddress& overridden = config.listeners[2];
  EXPECT_EQ(overridden.address, "::1");
  EXPECT_EQ(overridden.port, 9443);
  EXPECT_EQ(overridden.tls_settings.key, dir_.file("other.key"));
  EXPECT_EQ(overridden.tls_settings.cert, dir_.file("other.crt"));
  EXPECT_EQ(overridden.tls_settings.ca.size(), 2U);
  EXPECT_EQ(overridden.tls_settings.ciphers, "HIGH");
  EXPECT_EQ(overridden.tls_settings.secure_protocol, "TLS_server_method");
  // Another key does not inherit the section key's passphrase (Hipache's rule).
  EXPECT_TRUE(overridden.tls_settings.passphrase.empty());

  const ListenAddress& own_pass = config.listeners[3];
  EXPECT_EQ(own_pass.port, 443);
  EXPECT_EQ(own_pass.tls_settings.passphrase, "own");
  EXPECT_EQ(own_pass.tls_settings.cert, dir_.file("server.crt"));
  // The section itself is untouched by the overrides.
  EXPECT_EQ(config.https.key, dir_.file("server.key"));
}

TEST_F(ConfigHttps, UnknownKeyInHttpsBindObjectIsAWarning) {
  const Config config =
      parse_https({{"bind", {{{"address", "127.0.0.1"}, {"honorCipherOrder", true}}}}});
  EXPECT_EQ(config.warnings,
            std::vector<std::string>{
                "config/x.json: unknown key https.bind[0].honorCipherOrder (ignored)"});
}

TEST_F(ConfigHttps, MissingKeyOrCertNamesTheKey) {
  EXPECT_EQ(error_of([] { parse(R"({"https": {"bind": "0.0.0.0"}})"); }),
            "config/x.json: https.key: missing; an https listener (0.0.0.0 port 443) needs a "
            "private key");
  EXPECT_EQ(error_of([&] {
              parse(json{{"https", {{"bind", "::"}, {"key", dir_.file("server.key")}}}}.dump());
            }),
            "config/x.json: https.cert: missing; an https listener (:: port 443) needs a "
            "certificate");
}

TEST_F(ConfigHttps, UnreadableFilesNameTheKey) {
  const std::string missing = dir_.file("nope.key");
  EXPECT_EQ(https_error({{"bind", "0.0.0.0"}, {"key", missing}}),
            "config/x.json: https.key: cannot read \"" + missing + "\": No such file or directory");
  EXPECT_EQ(https_error({{"bind", "0.0.0.0"}, {"cert", dir_.file("")}}),
            "config/x.json: https.cert: cannot read \"" + dir_.file("") + "\": Is a directory");
  EXPECT_EQ(https_error({{"bind", "0.0.0.0"}, {"ca", {dir_.file("ca.pem"), missing}}}),
            "config/x.json: https.ca: cannot read \"" + missing + "\": No such file or directory");
  EXPECT_EQ(https_error({{"bind", {{{"address", "0.0.0.0"}, {"key", missing}}}}}),
            "config/x.json: https.bind[0].key: cannot read \"" + missing +
                "\": No such file or directory");
}

TEST_F(ConfigHttps, CaAcceptsStringOrList) {
  EXPECT_EQ(parse_https({{"ca", dir_.file("ca.pem")}}).https.ca,
            std::vector<std::string>{dir_.file("ca.pem")});
  EXPECT_EQ(parse_https({{"ca", {dir_.file("ca.pem"), ""}}}).https.ca,
            std::vector<std::string>{dir_.file("ca.pem")});
  EXPECT_EQ(https_error({{"ca", 3}}),
            "config/x.json: https.ca: expected a file name or a list of file names, got 3");
  EXPECT_EQ(https_error({{"ca", {"a", false}}}),
            "config/x.json: https.ca[1]: expected a string, got false");
}

TEST_F(ConfigHttps, SecureProtocolNames) {
  for (const char* name :
       {"SSLv23_method", "SSLv23_server_method", "TLS_method", "TLS_server_method",
        "TLSv1_2_method", "TLSv1_2_server_method", "TLSv1_3_method", "TLSv1_3_server_method",
        "TLSv1_method", "TLSv1_server_method", "TLSv1_1_method", "TLSv1_1_server_method"}) {
    EXPECT_EQ(parse_https({{"secureProtocol", name}}).https.secure_protocol, name);
  }
  EXPECT_EQ(https_error({{"secureProtocol", "SSLv3_method"}}),
            "config/x.json: https.secureProtocol: unsupported value \"SSLv3_method\" (expected "
            "SSLv23_method, TLS_method, TLSv1_2_method, TLSv1_3_method, TLSv1_1_method, "
            "TLSv1_method or their _server_method forms)");
  EXPECT_EQ(https_error({{"bind", {{{"address", "::1"}, {"secureProtocol", "tls1.2"}}}}}),
            "config/x.json: https.bind[0].secureProtocol: unsupported value \"tls1.2\" (expected "
            "SSLv23_method, TLS_method, TLSv1_2_method, TLSv1_3_method, TLSv1_1_method, "
            "TLSv1_method or their _server_method forms)");
}

TEST_F(ConfigHttps, TypeErrors) {
  EXPECT_EQ(https_error({{"honorCipherOrder", "yes"}}),
            "config/x.json: https.honorCipherOrder: expected true or false, got \"yes\"");
  EXPECT_EQ(https_error({{"secureOptions", -4}}),
            "config/x.json: https.secureOptions: expected a non-negative number, got -4");
  EXPECT_EQ(https_error({{"passphrase", 1234}}),
            "config/x.json: https.passphrase: expected a string, got 1234");
  EXPECT_EQ(https_error({{"port", 0}}),
            "config/x.json: https.port: expected a port number (1-65535), got 0");
}

TEST_F(ConfigHttps, HttpAndHttpsCannotShareASocket) {
  EXPECT_EQ(https_error({{"bind", "127.0.0.1"}, {"port", 80}}),
            "config/x.json: https.bind: 127.0.0.1 port 80 is already used by http.bind");
}

TEST_F(ConfigHttps, CertDir) {
  const Config config = parse_https({{"certDir", dir_.file("")}});
  EXPECT_EQ(config.cert_dir, dir_.file(""));
  EXPECT_EQ(https_error({{"certDir", dir_.file("missing")}}),
            "config/x.json: https.certDir: cannot read \"" + dir_.file("missing") +
                "\": No such file or directory");
  EXPECT_EQ(https_error({{"certDir", dir_.file("ca.pem")}}),
            "config/x.json: https.certDir: \"" + dir_.file("ca.pem") + "\" is not a directory");
}

// ------------------------------------------------------------------------------------------
// Hipache 0.3.x listening layout

TEST(ConfigLegacy, ServerPortListensOnAllInterfaces) {
  const Config config = parse(R"({"server": {"port": 8080}})");
  ASSERT_EQ(config.listeners.size(), 1U);
  EXPECT_EQ(config.listeners[0].address, "0.0.0.0");
  EXPECT_EQ(config.listeners[0].port, 8080);
  EXPECT_EQ(config.warnings,
            std::vector<std::string>{
                "config/x.json: server.port is deprecated (Hipache 0.3.x); use http.port"});
}

TEST(ConfigLegacy, HttpPortWinsOverServerPort) {
  const Config config = parse(R"({"server": {"port": 8080}, "http": {"port": 9090}})");
  ASSERT_EQ(config.listeners.size(), 1U);
  EXPECT_EQ(config.listeners[0].port, 9090);
  EXPECT_EQ(config.listeners[0].address, "0.0.0.0");
  EXPECT_EQ(config.warnings,
            std::vector<std::string>{"config/x.json: server.port is deprecated (Hipache 0.3.x); "
                                     "use http.port (http.port is also set and wins)"});
}

TEST(ConfigLegacy, ServerAddressAndAddress6) {
  const Config config = parse(
      R"({"server": {"port": 81, "address": ["127.0.0.1", "10.0.0.1"], "address6": ["::1"]}})");
  ASSERT_EQ(config.listeners.size(), 3U);
  EXPECT_EQ(config.listeners[0].address, "127.0.0.1");
  EXPECT_EQ(config.listeners[1].address, "10.0.0.1");
  EXPECT_EQ(config.listeners[2].address, "::1");
  for (const ListenAddress& listener : config.listeners) {
    EXPECT_EQ(listener.port, 81);
    EXPECT_FALSE(listener.tls);
  }
  EXPECT_TRUE(has_warning(config,
                          "config/x.json: server.address is deprecated (Hipache 0.3.x); "
                          "use http.bind and https.bind"));
  EXPECT_TRUE(has_warning(config,
                          "config/x.json: server.address6 is deprecated (Hipache 0.3.x); "
                          "use http.bind and https.bind"));
  EXPECT_EQ(config.warnings.size(), 3U) << all_warnings(config);
}

TEST(ConfigLegacy, ServerAddressAsStringAndDefaultPort) {
  const Config config = parse(R"({"server": {"address": "127.0.0.1"}})");
  ASSERT_EQ(config.listeners.size(), 1U);
  EXPECT_EQ(config.listeners[0].address, "127.0.0.1");
  EXPECT_EQ(config.listeners[0].port, 80);
}

TEST(ConfigLegacy, HttpBindWinsOverServerAddress) {
  const Config config =
      parse(R"({"server": {"address": ["10.0.0.1"]}, "http": {"bind": ["127.0.0.1"]}})");
  ASSERT_EQ(config.listeners.size(), 1U);
  EXPECT_EQ(config.listeners[0].address, "127.0.0.1");
  EXPECT_EQ(config.warnings,
            std::vector<std::string>{
                "config/x.json: server.address is deprecated (Hipache 0.3.x); use http.bind and "
                "https.bind (http.bind is also set and wins)"});
}

TEST(ConfigLegacy, ServerAddressErrorsNameTheLegacyKey) {
  EXPECT_EQ(parse_error(R"({"server": {"address": ["127.0.0.1", "nowhere"]}})"),
            "config/x.json: server.address[1]: \"nowhere\" is not an IP address (host names are "
            "not resolved; use an address such as 0.0.0.0 or ::)");
  EXPECT_EQ(parse_error(R"({"server": {"address6": [{"address": "::1"}]}})"),
            "config/x.json: server.address6[0]: expected an IP address, got an object");
  EXPECT_EQ(parse_error(R"({"server": {"address": 5}})"),
            "config/x.json: server.address: expected an address or a list of addresses, got 5");
  EXPECT_EQ(parse_error(R"({"server": {"port": "80"}})"),
            "config/x.json: server.port: expected a port number (1-65535), got \"80\"");
}

TEST(ConfigLegacy, ServerHttpsListensOnTheSameAddresses) {
  TempDir dir;
  const json root = {
      {"server",
       {{"port", 8080},
        {"address", {"127.0.0.1"}},
        {"address6", {"::1"}},
        {"https",
         {{"port", 8443}, {"key", dir.file("server.key")}, {"cert", dir.file("server.crt")}}}}}};
  const Config config = parse(root.dump());
  ASSERT_EQ(config.listeners.size(), 4U);
  EXPECT_FALSE(config.listeners[0].tls);
  EXPECT_EQ(config.listeners[0].port, 8080);
  EXPECT_FALSE(config.listeners[1].tls);
  EXPECT_TRUE(config.listeners[2].tls);
  EXPECT_EQ(config.listeners[2].address, "127.0.0.1");
  EXPECT_EQ(config.listeners[2].port, 8443);
  EXPECT_EQ(config.listeners[2].tls_settings.key, dir.file("server.key"));
  EXPECT_EQ(config.listeners[2].tls_settings.cert, dir.file("server.crt"));
  EXPECT_TRUE(config.listeners[3].tls);
  EXPECT_EQ(config.listeners[3].address, "::1");
  EXPECT_EQ(config.https.key, dir.file("server.key"));
  EXPECT_TRUE(has_warning(config,
                          "config/x.json: server.https is deprecated (Hipache 0.3.x); "
                          "use the https section"));
  EXPECT_EQ(config.warnings.size(), 4U) << all_warnings(config);
}

TEST(ConfigLegacy, ServerHttpsWithoutAddressListensEverywhere) {
  TempDir dir;
  const json root = {
      {"server", {{"https", {{"key", dir.file("server.key")}, {"cert", dir.file("server.crt")}}}}}};
  const Config config = parse(root.dump());
  ASSERT_EQ(config.listeners.size(), 2U);
  EXPECT_EQ(config.listeners[0].address, "0.0.0.0");
  EXPECT_EQ(config.listeners[0].port, 80);
  EXPECT_EQ(config.listeners[1].address, "0.0.0.0");
  EXPECT_EQ(config.listeners[1].port, 443);
  EXPECT_TRUE(config.listeners[1].tls);
}

TEST(ConfigLegacy, HttpsSectionWinsOverServerHttpsKeyByKey) {
  TempDir dir;
  const json root = {
      {"server",
       {{"https",
         {{"port", 1443}, {"key", dir.file("server.key")}, {"cert", dir.file("server.crt")}}}}},
      {"https", {{"port", 2443}, {"cert", dir.file("other.crt")}}}};
  const Config config = parse(root.dump());
  ASSERT_EQ(config.listeners.size(), 2U);
  EXPECT_EQ(config.listeners[1].port, 2443);
  EXPECT_EQ(config.listeners[1].tls_settings.key, dir.file("server.key"));
  EXPECT_EQ(config.listeners[1].tls_settings.cert, dir.file("other.crt"));
  EXPECT_TRUE(has_warning(config,
                          "config/x.json: server.https is deprecated (Hipache 0.3.x); "
                          "use the https section (keys also set in https win)"));
}

TEST(ConfigLegacy, ServerHttpsErrorsNameTheLegacyKey) {
  EXPECT_EQ(parse_error(R"({"server": {"https": {"port": 443}}})"),
            "config/x.json: server.https.key: missing; an https listener (0.0.0.0 port 443) "
            "needs a private key");
  EXPECT_EQ(parse_error(R"({"server": {"https": {"key": "/nonexistent/k", "cert": "/x"}}})"),
            "config/x.json: server.https.key: cannot read \"/nonexistent/k\": No such file or "
            "directory");
  EXPECT_EQ(parse_error(R"({"server": {"https": true}})"),
            "config/x.json: server.https: expected an object, got true");
  TempDir dir;
  const json root = {
      {"server",
       {{"https",
         {{"bind", "::"}, {"key", dir.file("server.key")}, {"cert", dir.file("server.crt")}}}}}};
  const Config config = parse(root.dump());
  EXPECT_TRUE(has_warning(config, "config/x.json: unknown key server.https.bind (ignored)"));
}

// ------------------------------------------------------------------------------------------
// driver and the legacy redis* keys

TEST(ConfigDriver, SingleUrl) {
  const Config config = parse(R"({"driver": "redis://:pw@10.0.0.9:6380/2#pre:"})");
  EXPECT_EQ(config.driver, std::vector<std::string>{"redis://:pw@10.0.0.9:6380/2#pre:"});
  EXPECT_EQ(config.read_endpoint.host, "10.0.0.9");
  EXPECT_EQ(config.read_endpoint.port, 6380);
  EXPECT_EQ(config.read_endpoint.password, "pw");
  EXPECT_EQ(config.read_endpoint.database, 2);
  EXPECT_EQ(config.read_endpoint.prefix, "pre:");
  EXPECT_EQ(config.write_endpoint.host, "10.0.0.9");
  EXPECT_EQ(config.write_endpoint.prefix, "pre:");
}

TEST(ConfigDriver, ReadAndWriteUrls) {
  const Config config = parse(R"({"driver": ["redis://replica:6379", "redis://master:6380/1"]})");
  EXPECT_EQ(config.read_endpoint.host, "replica");
  EXPECT_EQ(config.read_endpoint.port, 6379);
  EXPECT_EQ(config.write_endpoint.host, "master");
  EXPECT_EQ(config.write_endpoint.port, 6380);
  EXPECT_EQ(config.write_endpoint.database, 1);
  EXPECT_TRUE(config.warnings.empty()) << all_warnings(config);
}

TEST(ConfigDriver, WriteUrlUsesTheReadPrefix) {
  const Config inherited = parse(R"({"driver": ["redis://r#p:", "redis://m"]})");
  EXPECT_EQ(inherited.write_endpoint.prefix, "p:");
  EXPECT_TRUE(inherited.warnings.empty());
  const Config different = parse(R"({"driver": ["redis://r#a", "redis://m#b"]})");
  EXPECT_EQ(different.write_endpoint.prefix, "a");
  EXPECT_EQ(different.warnings,
            std::vector<std::string>{"config/x.json: driver: the write URL's prefix \"b\" is "
                                     "ignored; the read URL's prefix \"a\" applies to both, as "
                                     "in Hipache"});
}

TEST(ConfigDriver, MoreThanTwoUrlsWarns) {
  const Config config = parse(R"({"driver": ["redis://a", "redis://b", "redis://c"]})");
  EXPECT_EQ(config.read_endpoint.host, "a");
  EXPECT_EQ(config.write_endpoint.host, "c");
  EXPECT_EQ(config.warnings,
            std::vector<std::string>{"config/x.json: driver: only the first (reads) and the last "
                                     "(writes) URL are used; 1 ignored"});
}

TEST(ConfigDriver, Errors) {
  EXPECT_EQ(parse_error(R"({"driver": "http://x"})"),
            "config/x.json: driver: bad driver URL \"http://x\": unsupported scheme \"http\" "
            "(only redis is supported)");
  EXPECT_EQ(parse_error(R"({"driver": ["redis:", "redis://m:0"]})"),
            "config/x.json: driver[1]: bad driver URL \"redis://m:0\": port must be a number from "
            "1 to 65535, got \"0\"");
  EXPECT_EQ(parse_error(R"({"driver": []})"),
            "config/x.json: driver: expected a URL or a non-empty list of URLs, got an array");
  EXPECT_EQ(parse_error(R"({"driver": 6379})"),
            "config/x.json: driver: expected a URL or a non-empty list of URLs, got 6379");
  EXPECT_EQ(parse_error(R"({"driver": ["redis:", 1]})"),
            "config/x.json: driver[1]: expected a string, got 1");
  const std::string censored = parse_error(R"({"driver": "redis://:topsecret@h:99999"})");
  EXPECT_EQ(censored.find("topsecret"), std::string::npos) << censored;
}

TEST(ConfigDriver, LegacyRedisKeysBuildTheReadUrl) {
  const Config config = parse(R"({"redisHost": "10.0.0.2", "redisPort": 6380,
                                  "redisPassword": "p@ss word", "redisDatabase": 3})");
  ASSERT_EQ(config.driver.size(), 1U);
  EXPECT_EQ(config.driver[0], "redis://:p%40ss%20word@10.0.0.2:6380/3");
  EXPECT_EQ(config.read_endpoint.host, "10.0.0.2");
  EXPECT_EQ(config.read_endpoint.port, 6380);
  EXPECT_EQ(config.read_endpoint.password, "p@ss word");
  EXPECT_EQ(config.read_endpoint.database, 3);
  EXPECT_EQ(config.write_endpoint.host, "10.0.0.2");
  EXPECT_EQ(config.warnings,
            (std::vector<std::string>{
                "config/x.json: redisHost is deprecated (Hipache 0.3.x); use driver",
                "config/x.json: redisPort is deprecated (Hipache 0.3.x); use driver",
                "config/x.json: redisPassword is deprecated (Hipache 0.3.x); use driver",
                "config/x.json: redisDatabase is deprecated (Hipache 0.3.x); use driver"}));
}

TEST(ConfigDriver, LegacyMasterKeysBuildTheWriteUrl) {
  const Config config = parse(R"({"redisHost": "replica", "redisMasterHost": "::1",
                                  "redisMasterPort": "6390", "redisMasterPassword": "mpw",
                                  "redisMasterDatabase": "4"})");
  EXPECT_EQ(config.driver,
            (std::vector<std::string>{"redis://replica", "redis://:mpw@[::1]:6390/4"}));
  EXPECT_EQ(config.read_endpoint.host, "replica");
  EXPECT_EQ(config.read_endpoint.port, 6379);
  EXPECT_EQ(config.write_endpoint.host, "::1");
  EXPECT_EQ(config.write_endpoint.port, 6390);
  EXPECT_EQ(config.write_endpoint.password, "mpw");
  EXPECT_EQ(config.write_endpoint.database, 4);
  EXPECT_TRUE(has_warning(
      config, "config/x.json: redisMasterHost is deprecated (Hipache 0.3.x); use driver"));
  EXPECT_TRUE(has_warning(
      config, "config/x.json: redisMasterPort is deprecated (Hipache 0.3.x); use driver"));
  EXPECT_TRUE(has_warning(
      config, "config/x.json: redisMasterPassword is deprecated (Hipache 0.3.x); use driver"));
  EXPECT_TRUE(has_warning(
      config, "config/x.json: redisMasterDatabase is deprecated (Hipache 0.3.x); use driver"));
  EXPECT_EQ(config.warnings.size(), 5U) << all_warnings(config);
}

TEST(ConfigDriver, LegacyMasterKeysNeedRedisMasterHost) {
  const Config config = parse(R"({"redisPort": 6381, "redisMasterPort": 6382})");
  EXPECT_EQ(config.driver, std::vector<std::string>{"redis://:6381"});
  EXPECT_EQ(config.read_endpoint.host, "127.0.0.1");
  EXPECT_EQ(config.read_endpoint.port, 6381);
  EXPECT_EQ(config.write_endpoint.port, 6381);
  EXPECT_TRUE(has_warning(config,
                          "config/x.json: redisMasterPort is deprecated (Hipache 0.3.x); "
                          "use driver (ignored without redisMasterHost)"));
}

TEST(ConfigDriver, DriverWinsOverLegacyKeys) {
  const Config config = parse(R"({"driver": "redis://new:7000", "redisHost": "old"})");
  EXPECT_EQ(config.driver, std::vector<std::string>{"redis://new:7000"});
  EXPECT_EQ(config.read_endpoint.host, "new");
  EXPECT_EQ(config.warnings,
            std::vector<std::string>{"config/x.json: redisHost is deprecated (Hipache 0.3.x); use "
                                     "driver (driver is also set and wins)"});
}

TEST(ConfigDriver, LegacyKeyErrors) {
  EXPECT_EQ(parse_error(R"({"redisPort": "abc"})"),
            "config/x.json: redisPort: expected a number, got \"abc\"");
  EXPECT_EQ(parse_error(R"({"redisPort": 0})"),
            "config/x.json: redisPort: must be from 1 to 65535, got 0");
  EXPECT_EQ(parse_error(R"({"redisMasterDatabase": -1})"),
            "config/x.json: redisMasterDatabase: expected a non-negative number, got -1");
  EXPECT_EQ(parse_error(R"({"redisHost": 127})"),
            "config/x.json: redisHost: expected a string, got 127");
  EXPECT_EQ(parse_error(R"({"redisHost": "bad host"})"),
            "config/x.json: redisHost: bad driver URL \"redis://bad host\": \"bad host\" is not a "
            "valid host name");
}

// ------------------------------------------------------------------------------------------
// user and group

TEST(ConfigUser, GroupDefaultsToUser) {
  const Config config = parse(R"({"user": "hipache"})");
  EXPECT_EQ(config.user, "hipache");
  EXPECT_EQ(config.group, "hipache");
}

TEST(ConfigUser, ExplicitGroup) {
  const Config config = parse(R"({"user": "hipache", "group": "nogroup"})");
  EXPECT_EQ(config.group, "nogroup");
}

TEST(ConfigUser, NumericIds) {
  EXPECT_EQ(parse(R"({"user": 0})").user, "root");
  EXPECT_EQ(parse(R"({"user": 0})").group, "root");
  EXPECT_EQ(parse(R"({"user": 1000, "group": 100})").user, "1000");
  EXPECT_EQ(parse(R"({"user": 1000, "group": 100})").group, "100");
  EXPECT_EQ(parse(R"({"user": "root"})").user, "root");
}

TEST(ConfigUser, Errors) {
  EXPECT_EQ(parse_error(R"({"user": ""})"),
            "config/x.json: user: must not be empty (use \"root\" to keep running as root)");
  EXPECT_EQ(parse_error(R"({"user": true})"),
            "config/x.json: user: expected a name or a numeric id, got true");
  EXPECT_EQ(parse_error(R"({"group": -1})"),
            "config/x.json: group: expected a non-negative number, got -1");
}

// ------------------------------------------------------------------------------------------
// describe_config

TEST(DescribeConfig, CurrentLayoutWithSecretsCensored) {
  TempDir dir;
  const json root = {
      {"server", {{"workers", 2}, {"accessLog", nullptr}, {"lruCache", {{"size", 3}}}}},
      {"http", {{"bind", {"127.0.0.1", "::1"}}, {"port", 8080}}},
      {"https",
       {{"bind", {{{"address", "0.0.0.0"}, {"passphrase", "bind-secret"}}}},
        {"key", dir.file("server.key")},
        {"cert", dir.file("server.crt")},
        {"passphrase", "section-secret"}}},
      {"driver", {"redis://:readpw@r:6379#p", "redis://user:writepw@m/1"}},
      {"user", "proxy"}};
  const std::string text = describe_config(parse(root.dump()));
  EXPECT_EQ(text.find("section-secret"), std::string::npos) << text;
  EXPECT_EQ(text.find("bind-secret"), std::string::npos) << text;
  EXPECT_EQ(text.find("readpw"), std::string::npos) << text;
  EXPECT_EQ(text.find("writepw"), std::string::npos) << text;

  const json out = json::parse(text);
  EXPECT_EQ(out["server"]["workers"], 2);
  EXPECT_TRUE(out["server"]["accessLog"].is_null());
  EXPECT_EQ(out["server"]["lruCache"]["size"], 3);
  EXPECT_EQ(out["server"]["tcpTimeout"], 30);
  EXPECT_EQ(out["server"]["memoryLimit"], 200);
  EXPECT_EQ(out["server"]["backendTlsVerify"], true);
  EXPECT_EQ(out["http"]["bind"].size(), 2U);
  EXPECT_EQ(out["http"]["bind"][1]["address"], "::1");
  EXPECT_EQ(out["http"]["bind"][1]["port"], 8080);
  EXPECT_EQ(out["https"]["passphrase"], "<censored>");
  EXPECT_EQ(out["https"]["key"], dir.file("server.key"));  // a path is not a secret
  EXPECT_EQ(out["https"]["bind"][0]["passphrase"], "<censored>");
  EXPECT_EQ(out["https"]["bind"][0]["port"], 443);
  EXPECT_EQ(out["driver"][0], "redis://:<censored>@r:6379#p");
  EXPECT_EQ(out["driver"][1], "redis://user:<censored>@m/1");
  EXPECT_EQ(out["user"], "proxy");
  EXPECT_EQ(out["group"], "proxy");
  EXPECT_NE(text.find("\n  \""), std::string::npos) << "expected two-space indentation";
}

TEST(DescribeConfig, EmptyPassphraseStaysEmpty) {
  const json out = json::parse(describe_config(parse("{}")));
  EXPECT_EQ(out["https"]["passphrase"], "");
  EXPECT_EQ(out["driver"][0], "redis:");
  EXPECT_EQ(out["server"]["accessLog"], "/var/log/hipache/access.log");
}

TEST(DescribeConfig, DescribesLegacyInputInTheCurrentLayout) {
  const json out = json::parse(describe_config(parse(R"({"server": {"port": 8080},
                                                         "redisHost": "10.0.0.3"})")));
  EXPECT_EQ(out["http"]["bind"][0]["address"], "0.0.0.0");
  EXPECT_EQ(out["http"]["bind"][0]["port"], 8080);
  EXPECT_EQ(out["driver"][0], "redis://10.0.0.3");
  EXPECT_FALSE(out["server"].contains("port"));
  EXPECT_FALSE(out.contains("redisHost"));
}

// ------------------------------------------------------------------------------------------
// default_config_path and load_config

class DefaultConfigPath : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const char* value = std::getenv("SETTINGS_FLAVOR")) saved_ = value;
  }
  void TearDown() override {
    if (saved_) {
      setenv("SETTINGS_FLAVOR", saved_->c_str(), 1);
    } else {
      unsetenv("SETTINGS_FLAVOR");
    }
  }
  std::optional<std::string> saved_;
};

TEST_F(DefaultConfigPath, WithoutFlavor) {
  unsetenv("SETTINGS_FLAVOR");
  EXPECT_EQ(default_config_path(), "config/config.json");
}

TEST_F(DefaultConfigPath, EmptyFlavorIsNoFlavor) {
  setenv("SETTINGS_FLAVOR", "", 1);
  EXPECT_EQ(default_config_path(), "config/config.json");
}

TEST_F(DefaultConfigPath, WithFlavor) {
  setenv("SETTINGS_FLAVOR", "test", 1);
  EXPECT_EQ(default_config_path(), "config/config_test.json");
  setenv("SETTINGS_FLAVOR", "production", 1);
  EXPECT_EQ(default_config_path(), "config/config_production.json");
}

TEST(LoadConfig, ReadsTheFile) {
  TempDir dir;
  const std::string path =
      dir.write("hipache.json", R"({"http": {"port": 8081}, "server": {"workers": 2, "x": 1}})");
  const Config config = load_config(path);
  EXPECT_EQ(config.source_path, path);
  EXPECT_EQ(config.listeners[0].port, 8081);
  EXPECT_EQ(config.server.workers, 2U);
  EXPECT_EQ(config.warnings, std::vector<std::string>{path + ": unknown key server.x (ignored)"});
}

TEST(LoadConfig, MissingFile) {
  TempDir dir;
  const std::string path = dir.file("absent.json");
  EXPECT_EQ(error_of([&] { load_config(path); }),
            path + ": cannot read: No such file or directory");
}

TEST(LoadConfig, Directory) {
  TempDir dir;
  const std::string path = dir.file("");
  EXPECT_EQ(error_of([&] { load_config(path); }), path + ": cannot read: Is a directory");
}

TEST(LoadConfig, UnreadableFile) {
  TempDir dir;
  const std::string path = dir.write("locked.json", "{}");
  chmod(path.c_str(), 0);
  // Root reads any file, so the check runs in a child that gives root up (uid "nobody").
  EXPECT_EXIT(
      {
        if (geteuid() == 0 && setuid(65534) != 0) std::exit(2);
        const bool ok =
            error_of([&] { load_config(path); }) == path + ": cannot read: Permission denied";
        std::exit(ok ? 0 : 1);
      },
      testing::ExitedWithCode(0), "");
}

TEST(LoadConfig, ErrorsNameTheFile) {
  TempDir dir;
  const std::string path = dir.write("bad.json", R"({"server": {"tcpTimeout": "abc"}})");
  EXPECT_EQ(error_of([&] { load_config(path); }),
            path + ": server.tcpTimeout: expected a non-negative number, got \"abc\"");
  const std::string broken = dir.write("broken.json", "{\"server\": ");
  EXPECT_EQ(error_of([&] { load_config(broken); }).rfind(broken + ": invalid JSON: ", 0), 0U);
}

TEST(LoadConfig, ShippedConfigsAreValid) {
  // The example configs in config/ must load.
  const std::string dir = HIPACHE_SOURCE_DIR "/config/";
  for (const std::string& path : {dir + "config.json", dir + "config_test.json"}) {
    const Config config = load_config(path);
    EXPECT_TRUE(config.warnings.empty()) << all_warnings(config);
    EXPECT_EQ(config.server.access_log, "-");
    EXPECT_EQ(config.server.workers, 2U);
    ASSERT_EQ(config.listeners.size(), 1U);
    EXPECT_EQ(config.listeners[0].address, "127.0.0.1");
  }
  EXPECT_EQ(load_config(dir + "config.json").listeners[0].port, 8080);
  EXPECT_EQ(load_config(dir + "config_test.json").listeners[0].port, 8081);
}

}  // namespace
}  // namespace hipache
