// server.activeHealthCheck (include/hipache/config.hpp): off unless present, its defaults, and
// the values refused with a clear message.
#include <gtest/gtest.h>

#include "config_test_support.hpp"

namespace hipache::config_test {
namespace {

TEST(ActiveHealthCheckConfig, OffUnlessPresent) {
  EXPECT_FALSE(parse("{}").server.active_health_check.has_value());
  EXPECT_FALSE(
      parse(R"({"server": {"activeHealthCheck": null}})").server.active_health_check.has_value());
}

TEST(ActiveHealthCheckConfig, Defaults) {
  const Config config = parse(R"({"server": {"activeHealthCheck": {}}})");
  ASSERT_TRUE(config.server.active_health_check.has_value());
  const auto& check = *config.server.active_health_check;
  EXPECT_DOUBLE_EQ(check.interval_s, 3);
  EXPECT_DOUBLE_EQ(check.timeout_s, 3);
  EXPECT_EQ(check.method, "HEAD");
  EXPECT_EQ(check.path, "/");
  EXPECT_FALSE(check.host.has_value());
  EXPECT_EQ(check.max_concurrent, 16u);
  EXPECT_EQ(check.max_backends, 1000u);
  EXPECT_EQ(check.lock_ttl_s, 20u);
  EXPECT_EQ(check.release_after_s, 1800u);
}

TEST(ActiveHealthCheckConfig, EveryKey) {
  const Config config = parse(R"({"server": {"activeHealthCheck": {
      "interval": 0.5, "timeout": 1.5, "method": "GET", "path": "/health?full=1",
      "host": "ping", "maxConcurrent": 4, "maxBackends": 10, "lockTtl": 60,
      "releaseAfter": 600}}})");
  const auto& check = *config.server.active_health_check;
  EXPECT_DOUBLE_EQ(check.interval_s, 0.5);
  EXPECT_DOUBLE_EQ(check.timeout_s, 1.5);
  EXPECT_EQ(check.method, "GET");
  EXPECT_EQ(check.path, "/health?full=1");
  EXPECT_EQ(check.host, "ping");
  EXPECT_EQ(check.max_concurrent, 4u);
  EXPECT_EQ(check.max_backends, 10u);
  EXPECT_EQ(check.lock_ttl_s, 60u);
  EXPECT_EQ(check.release_after_s, 600u);
  EXPECT_TRUE(config.warnings.empty()) << all_warnings(config);
  // An empty host is what a template leaves behind: the frontend's name.
  EXPECT_FALSE(parse(R"({"server": {"activeHealthCheck": {"host": ""}}})")
                   .server.active_health_check->host.has_value());
}

TEST(ActiveHealthCheckConfig, BadValues) {
  const auto error = [](const std::string& check) {
    return parse_error(R"({"server": {"activeHealthCheck": )" + check + "}}");
  };
  EXPECT_EQ(error("true"),
            "config/x.json: server.activeHealthCheck: expected null or {\"interval\": ..., "
            "\"timeout\": ...}, got true");
  EXPECT_EQ(error(R"({"interval": 0})"),
            "config/x.json: server.activeHealthCheck.interval: must be between 0.1 and 3600 "
            "seconds");
  EXPECT_EQ(error(R"({"timeout": 5000})"),
            "config/x.json: server.activeHealthCheck.timeout: must be between 0.1 and 3600 "
            "seconds");
  EXPECT_EQ(error(R"({"method": "GET /x"})"),
            "config/x.json: server.activeHealthCheck.method: expected an HTTP method such as "
            "\"HEAD\" or \"GET\", got \"GET /x\"");
  EXPECT_EQ(error(R"({"path": "health"})"),
            "config/x.json: server.activeHealthCheck.path: expected a path starting with \"/\" "
            "without spaces, got \"health\"");
  EXPECT_EQ(error(R"({"path": "/a b"})"),
            "config/x.json: server.activeHealthCheck.path: expected a path starting with \"/\" "
            "without spaces, got \"/a b\"");
  EXPECT_EQ(error(R"({"host": "a\r\nX: y"})"),
            "config/x.json: server.activeHealthCheck.host: must not contain control "
            "characters, got \"a\\r\\nX: y\"");
  EXPECT_EQ(error(R"({"maxConcurrent": 0})"),
            "config/x.json: server.activeHealthCheck.maxConcurrent: must be at least 1");
  EXPECT_EQ(error(R"({"lockTtl": 1})"),
            "config/x.json: server.activeHealthCheck.lockTtl: must be at least 3 seconds");
}

TEST(ActiveHealthCheckConfig, UnknownKeysWarn) {
  const Config config = parse(R"({"server": {"activeHealthCheck": {"intervall": 2}}})");
  EXPECT_TRUE(has_warning(config,
                          "config/x.json: unknown key server.activeHealthCheck.intervall "
                          "(ignored)"));
}

}  // namespace
}  // namespace hipache::config_test
