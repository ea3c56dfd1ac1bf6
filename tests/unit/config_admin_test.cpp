// The config loader, the admin section: off by default, its binds read like http.bind and
// marked admin in Config::listeners, its port never shared with a proxy listener, the token
// censored by --dry.
#include <gtest/gtest.h>

#include <string>

#include "config_test_support.hpp"
#include "hipache/config.hpp"

namespace hipache {
namespace {

using config_test::all_warnings;
using config_test::parse;
using config_test::parse_error;

TEST(ConfigAdmin, OffByDefault) {
  const Config config = parse(R"({"http": {"bind": "127.0.0.1", "port": 8080}})");
  EXPECT_FALSE(config.admin_enabled());
  for (const auto& listener : config.listeners) EXPECT_FALSE(listener.admin);
  EXPECT_EQ(describe_config(config).find("\"admin\""), std::string::npos);
}

TEST(ConfigAdmin, DefaultBindAndPort) {
  const Config config = parse(R"({"http": {"port": 8080}, "admin": {}})");
  ASSERT_EQ(config.listeners.size(), 2U);
  EXPECT_FALSE(config.listeners[0].admin);
  EXPECT_TRUE(config.listeners[1].admin);
  EXPECT_EQ(config.listeners[1].address, "127.0.0.1");
  EXPECT_EQ(config.listeners[1].port, 9090);
  EXPECT_FALSE(config.listeners[1].tls);
  EXPECT_TRUE(config.admin.token.empty());
  EXPECT_EQ(config.admin.frontend_metrics, 0U);
}

TEST(ConfigAdmin, BindsAsHttpBindTakesThem) {
  const Config config = parse(R"({"http": {"port": 8080}, "admin": {"port": 9100,
      "bind": ["::1", {"address": "10.0.0.1", "port": 9200}], "token": "t0k",
      "frontendMetrics": 10}})");
  ASSERT_EQ(config.listeners.size(), 3U);
  EXPECT_EQ(config.listeners[1].address, "::1");
  EXPECT_EQ(config.listeners[1].port, 9100);
  EXPECT_EQ(config.listeners[2].address, "10.0.0.1");
  EXPECT_EQ(config.listeners[2].port, 9200);
  EXPECT_EQ(config.admin.token, "t0k");
  EXPECT_EQ(config.admin.frontend_metrics, 10U);
  const std::string dry = describe_config(config);
  EXPECT_EQ(dry.find("t0k"), std::string::npos) << dry;
  EXPECT_NE(dry.find("<censored>"), std::string::npos) << dry;
  EXPECT_NE(dry.find("9200"), std::string::npos) << dry;
}

TEST(ConfigAdmin, Errors) {
  EXPECT_EQ(parse_error(R"({"http": {"port": 9090}, "admin": {}})"),
            "config/x.json: admin.bind: 127.0.0.1 port 9090 is already used by http.bind");
  EXPECT_EQ(parse_error(R"({"admin": {"bind": "example.com"}})"),
            "config/x.json: admin.bind: \"example.com\" is not an IP address (host names are not "
            "resolved; use an address such as 0.0.0.0 or ::)");
  EXPECT_EQ(parse_error(R"({"admin": {"bind": []}})"),
            "config/x.json: admin.bind: empty (remove the admin section to turn the listener "
            "off)");
  EXPECT_NE(parse_error(R"({"admin": {"frontendMetrics": 65}})").find("admin.frontendMetrics"),
            std::string::npos);
  EXPECT_NE(parse_error(R"({"admin": {"token": 5}})").find("admin.token"), std::string::npos);
  EXPECT_NE(parse_error(R"({"admin": {"port": 0}})").find("admin.port"), std::string::npos);
}

TEST(ConfigAdmin, UnknownKeysWarn) {
  const Config config = parse(R"({"admin": {"bnid": "127.0.0.1"}})");
  EXPECT_NE(all_warnings(config).find("admin.bnid"), std::string::npos) << all_warnings(config);
}

}  // namespace
}  // namespace hipache
