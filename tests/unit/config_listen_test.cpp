// The config loader, what to listen on: http.bind (strings, objects, IPv6, duplicates, ports)
// and the https section (TLS material inherited or overridden per bind, secureProtocol, ca,
// certDir, and the errors naming each key).
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
using config_test::parse;
using config_test::parse_error;
using config_test::TempDir;
using nlohmann::json;

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

TEST(ConfigBind, ProxyProtocolPerBindObject) {
  const Config config = parse(R"({"http": {"bind": ["127.0.0.1",
      {"address": "10.0.0.1", "proxyProtocol": true}, {"address": "::1", "proxyProtocol": false}]}})");
  ASSERT_EQ(config.listeners.size(), 3U);
  EXPECT_FALSE(config.listeners[0].proxy_protocol);
  EXPECT_TRUE(config.listeners[1].proxy_protocol);
  EXPECT_FALSE(config.listeners[2].proxy_protocol);
  EXPECT_TRUE(config.warnings.empty());
  EXPECT_EQ(parse_error(R"({"http": {"bind": [{"address": "::1", "proxyProtocol": "yes"}]}})"),
            "config/x.json: http.bind[0].proxyProtocol: expected true or false, got \"yes\"");
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

TEST_F(ConfigHttps, ProxyProtocolOnAnHttpsBind) {
  const Config config =
      parse_https({{"bind", {{{"address", "10.0.0.1"}, {"proxyProtocol", true}}, "10.0.0.2"}}});
  ASSERT_EQ(config.listeners.size(), 3U);
  EXPECT_TRUE(config.listeners[1].tls);
  EXPECT_TRUE(config.listeners[1].proxy_protocol);
  EXPECT_FALSE(config.listeners[2].proxy_protocol);
  EXPECT_TRUE(config.warnings.empty());
}

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

}  // namespace
}  // namespace hipache
