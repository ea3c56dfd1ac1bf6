// The config loader, the server section and the file as a whole: every default, every server key
// and its errors (naming the file and key), the JSON and top level (unknown keys are warnings,
// messages on one line), and user and group.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config_test_support.hpp"
#include "hipache/config.hpp"

namespace hipache {
namespace {

using config_test::all_warnings;
using config_test::error_of;
using config_test::expected_cpus;
using config_test::has_warning;
using config_test::kPath;
using config_test::parse;
using config_test::parse_error;
using nlohmann::json;

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

}  // namespace
}  // namespace hipache
