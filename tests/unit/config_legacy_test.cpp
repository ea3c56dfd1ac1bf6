// The config loader, Hipache 0.3.x's listening layout: server.port, server.address and
// server.address6, server.https, and which key wins when both layouts are given.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config_test_support.hpp"
#include "hipache/config.hpp"

namespace hipache {
namespace {

using config_test::all_warnings;
using config_test::has_warning;
using config_test::parse;
using config_test::parse_error;
using config_test::TempDir;
using nlohmann::json;

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

}  // namespace
}  // namespace hipache
