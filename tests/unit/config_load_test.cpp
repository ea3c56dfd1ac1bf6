// The config loader's file and output: describe_config (the current layout, secrets censored),
// default_config_path (SETTINGS_FLAVOR) and load_config (unreadable files, errors naming the
// file, the shipped configs).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "config_test_support.hpp"
#include "hipache/config.hpp"

namespace hipache {
namespace {

using config_test::all_warnings;
using config_test::error_of;
using config_test::parse;
using config_test::TempDir;
using nlohmann::json;

// ------------------------------------------------------------------------------------------
// describe_config

TEST(DescribeConfig, CurrentLayoutWithSecretsCensored) {
  TempDir dir;
  const json root = {
      {"server", {{"workers", 2}, {"accessLog", nullptr}, {"lruCache", {{"size", 3}}}}},
      {"http", {{"bind", {"127.0.0.1", "::1"}}, {"port", 8080}}},
      {"https",
       {{"bind",
         {{{"address", "0.0.0.0"}, {"passphrase", "bind-secret"}, {"proxyProtocol", true}}}},
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
  EXPECT_EQ(out["http"]["bind"][1]["proxyProtocol"], false);
  EXPECT_EQ(out["https"]["bind"][0]["proxyProtocol"], true);
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
