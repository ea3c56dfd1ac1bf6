// The config loader, the driver: one or two Redis URLs, and the legacy redis* and redisMaster*
// keys that build them (the driver wins over them; their errors name the legacy key).
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
using nlohmann::json;

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
            "(expected redis, rediss, redis-sentinel or rediss-sentinel)");
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

}  // namespace
}  // namespace hipache
