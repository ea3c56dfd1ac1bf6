// parse_driver_url and censor_driver_url: every URL form Hipache accepted, and the errors for the
// ones it silently misread.
#include <gtest/gtest.h>

#include <string>

#include "hipache/config.hpp"

namespace hipache {
namespace {

std::string url_error(const std::string& url) {
  try {
    parse_driver_url(url);
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "<no error>";
}

void expect_endpoint(const RedisEndpoint& endpoint, const std::string& host, int port,
                     const std::string& password, int database, const std::string& prefix) {
  EXPECT_EQ(endpoint.host, host);
  EXPECT_EQ(endpoint.port, port);
  EXPECT_EQ(endpoint.password, password);
  EXPECT_EQ(endpoint.database, database);
  EXPECT_EQ(endpoint.prefix, prefix);
}

TEST(DriverUrl, BareSchemeMeansLocalRedis) {
  expect_endpoint(parse_driver_url("redis:"), "127.0.0.1", 6379, "", 0, "");
}

TEST(DriverUrl, EmptyAuthorityMeansLocalRedis) {
  expect_endpoint(parse_driver_url("redis://"), "127.0.0.1", 6379, "", 0, "");
}

TEST(DriverUrl, SchemeIsCaseInsensitive) {
  expect_endpoint(parse_driver_url("REDIS://cache.internal"), "cache.internal", 6379, "", 0, "");
  expect_endpoint(parse_driver_url("Redis:"), "127.0.0.1", 6379, "", 0, "");
}

TEST(DriverUrl, HostAndPort) {
  expect_endpoint(parse_driver_url("redis://10.0.0.5:6380"), "10.0.0.5", 6380, "", 0, "");
}

TEST(DriverUrl, EmptyPortMeansDefault) {
  expect_endpoint(parse_driver_url("redis://10.0.0.5:"), "10.0.0.5", 6379, "", 0, "");
}

TEST(DriverUrl, PortWithoutHostKeepsDefaultHost) {
  expect_endpoint(parse_driver_url("redis://:6380"), "127.0.0.1", 6380, "", 0, "");
}

TEST(DriverUrl, PasswordWithEmptyUser) {
  expect_endpoint(parse_driver_url("redis://:s3cret@h:1234"), "h", 1234, "s3cret", 0, "");
}

TEST(DriverUrl, UserPartIsAnAclUser) {
  const RedisEndpoint endpoint = parse_driver_url("redis://admin:s3cret@h");
  expect_endpoint(endpoint, "h", 6379, "s3cret", 0, "");
  EXPECT_EQ(endpoint.user, "admin");
  EXPECT_EQ(parse_driver_url("redis://:s3cret@h").user, "");
  EXPECT_EQ(parse_driver_url("redis://s3cret@h").user, "");
  EXPECT_EQ(parse_driver_url("redis://a%3Ab:pw@h").user, "a:b");
}

TEST(DriverUrl, UserinfoWithoutColonIsThePassword) {
  // Hipache took auth.split(':').pop(), so a lone word was the password.
  expect_endpoint(parse_driver_url("redis://s3cret@h"), "h", 6379, "s3cret", 0, "");
}

TEST(DriverUrl, PasswordOnlyKeepsDefaultHost) {
  expect_endpoint(parse_driver_url("redis://:pw@"), "127.0.0.1", 6379, "pw", 0, "");
}

TEST(DriverUrl, PasswordIsPercentDecoded) {
  expect_endpoint(parse_driver_url("redis://:p%40ss%3Aw%2fd@h"), "h", 6379, "p@ss:w/d", 0, "");
}

TEST(DriverUrl, LastAtSignEndsTheUserinfo) {
  expect_endpoint(parse_driver_url("redis://:p@ss@h"), "h", 6379, "p@ss", 0, "");
}

TEST(DriverUrl, Database) {
  expect_endpoint(parse_driver_url("redis://h/3"), "h", 6379, "", 3, "");
  expect_endpoint(parse_driver_url("redis://h/"), "h", 6379, "", 0, "");
  expect_endpoint(parse_driver_url("redis://h/0"), "h", 6379, "", 0, "");
  expect_endpoint(parse_driver_url("redis://h/2147483647"), "h", 6379, "", 2147483647, "");
}

TEST(DriverUrl, Prefix) {
  expect_endpoint(parse_driver_url("redis://h#hipache:"), "h", 6379, "", 0, "hipache:");
  expect_endpoint(parse_driver_url("redis://#p"), "127.0.0.1", 6379, "", 0, "p");
}

TEST(DriverUrl, EveryPart) {
  expect_endpoint(parse_driver_url("redis://u:pw@redis.example.com:7000/5#pre_"),
                  "redis.example.com", 7000, "pw", 5, "pre_");
}

TEST(DriverUrl, Ipv6InBrackets) {
  expect_endpoint(parse_driver_url("redis://[::1]:6380/1"), "::1", 6380, "", 1, "");
  expect_endpoint(parse_driver_url("redis://:pw@[2001:db8::7]"), "2001:db8::7", 6379, "pw", 0, "");
}

TEST(DriverUrl, ErrorsNameTheUrlAndTheReason) {
  EXPECT_EQ(url_error("http://h"),
            "bad driver URL \"http://h\": unsupported scheme \"http\" (expected redis, rediss, "
            "redis-sentinel or rediss-sentinel)");
  EXPECT_EQ(url_error("rediss:"), "bad driver URL \"rediss:\": expected \"//\" after \"rediss:\"");
  EXPECT_EQ(url_error(""), "bad driver URL \"\": missing scheme (expected redis://host:port)");
  EXPECT_EQ(url_error("10.0.0.1"),
            "bad driver URL \"10.0.0.1\": missing scheme (expected redis://host:port)");
  EXPECT_EQ(url_error("redis:h"), "bad driver URL \"redis:h\": expected \"//\" after \"redis:\"");
}

TEST(DriverUrl, BadPort) {
  EXPECT_EQ(url_error("redis://h:0"),
            "bad driver URL \"redis://h:0\": port must be a number from 1 to 65535, got \"0\"");
  EXPECT_EQ(url_error("redis://h:65536"),
            "bad driver URL \"redis://h:65536\": port must be a number from 1 to 65535, got "
            "\"65536\"");
  EXPECT_EQ(url_error("redis://h:abc"),
            "bad driver URL \"redis://h:abc\": port must be a number from 1 to 65535, got "
            "\"abc\"");
  EXPECT_EQ(url_error("redis://h:-1"),
            "bad driver URL \"redis://h:-1\": port must be a number from 1 to 65535, got \"-1\"");
}

TEST(DriverUrl, BadDatabase) {
  EXPECT_EQ(url_error("redis://h/-1"),
            "bad driver URL \"redis://h/-1\": database must be a non-negative integer, got "
            "\"-1\"");
  EXPECT_EQ(url_error("redis://h/one"),
            "bad driver URL \"redis://h/one\": database must be a non-negative integer, got "
            "\"one\"");
  EXPECT_EQ(url_error("redis://h/1/2"),
            "bad driver URL \"redis://h/1/2\": database must be a non-negative integer, got "
            "\"1/2\"");
  EXPECT_EQ(url_error("redis://h/2147483648"),
            "bad driver URL \"redis://h/2147483648\": database must be a non-negative integer, "
            "got \"2147483648\"");
}

TEST(DriverUrl, QueryStringIsOnlyForTls) {
  EXPECT_EQ(url_error("redis://h?db=1"),
            "bad driver URL \"redis://h?db=1\": query strings are only for TLS options "
            "(rediss:// or rediss-sentinel://)");
}

TEST(DriverUrl, TlsWithOptions) {
  const RedisEndpoint plain = parse_driver_url("rediss://h:6380/2#p");
  expect_endpoint(plain, "h", 6380, "", 2, "p");
  EXPECT_TRUE(plain.tls.enabled);
  EXPECT_EQ(plain.tls.ca, "");
  EXPECT_FALSE(parse_driver_url("redis://h").tls.enabled);

  const RedisEndpoint full = parse_driver_url(
      "REDISS://u:pw@h/1?ca=/etc/ca.pem&cert=/c%20d.pem&key=/k.pem&serverName=redis.internal#x");
  expect_endpoint(full, "h", 6379, "pw", 1, "x");
  EXPECT_EQ(full.tls.ca, "/etc/ca.pem");
  EXPECT_EQ(full.tls.cert, "/c d.pem");
  EXPECT_EQ(full.tls.key, "/k.pem");
  EXPECT_EQ(full.tls.server_name, "redis.internal");
}

TEST(DriverUrl, BadTlsOptions) {
  EXPECT_EQ(url_error("rediss://h?verify=no"),
            "bad driver URL \"rediss://h?verify=no\": unknown query parameter \"verify\" "
            "(expected ca, cert, key or serverName)");
  EXPECT_EQ(url_error("rediss://h?ca="),
            "bad driver URL \"rediss://h?ca=\": query parameter \"ca\" needs a value");
  EXPECT_EQ(url_error("rediss://h?ca"),
            "bad driver URL \"rediss://h?ca\": query parameter \"ca\" needs a value");
  EXPECT_EQ(url_error("rediss://h?ca=a&ca=b"),
            "bad driver URL \"rediss://h?ca=a&ca=b\": query parameter \"ca\" given twice");
  EXPECT_EQ(url_error("rediss://h?cert=c"),
            "bad driver URL \"rediss://h?cert=c\": a client certificate needs both cert and key");
  EXPECT_EQ(url_error("rediss://h?ca=%zz"),
            "bad driver URL \"rediss://h?ca=%zz\": bad percent-encoding in query parameter "
            "\"ca\"");
}

TEST(DriverUrl, Sentinel) {
  const RedisEndpoint one = parse_driver_url("redis-sentinel://10.0.0.1:26380/mymaster");
  EXPECT_EQ(one.master_name, "mymaster");
  ASSERT_EQ(one.sentinels.size(), 1U);
  EXPECT_EQ(one.sentinels[0], (RedisAddress{"10.0.0.1", 26380}));
  EXPECT_EQ(one.database, 0);
  EXPECT_FALSE(one.tls.enabled);

  const RedisEndpoint many =
      parse_driver_url("redis-sentinel://app:pw@s1,s2:26381,[::1]:26382/main/3#pre:");
  EXPECT_EQ(many.master_name, "main");
  EXPECT_EQ(many.user, "app");
  EXPECT_EQ(many.password, "pw");
  EXPECT_EQ(many.database, 3);
  EXPECT_EQ(many.prefix, "pre:");
  ASSERT_EQ(many.sentinels.size(), 3U);
  EXPECT_EQ(many.sentinels[0], (RedisAddress{"s1", 26379}));  // the sentinel's default port
  EXPECT_EQ(many.sentinels[1], (RedisAddress{"s2", 26381}));
  EXPECT_EQ(many.sentinels[2], (RedisAddress{"::1", 26382}));

  const RedisEndpoint tls = parse_driver_url("rediss-sentinel://s1/m?ca=/ca.pem");
  EXPECT_TRUE(tls.tls.enabled);
  EXPECT_EQ(tls.tls.ca, "/ca.pem");
  EXPECT_EQ(tls.master_name, "m");
}

TEST(DriverUrl, BadSentinel) {
  EXPECT_EQ(url_error("redis-sentinel://s1:26379"),
            "bad driver URL \"redis-sentinel://s1:26379\": a sentinel URL needs the master's "
            "name: redis-sentinel://host:port/name");
  EXPECT_EQ(url_error("redis-sentinel://s1//1"),
            "bad driver URL \"redis-sentinel://s1//1\": a sentinel URL needs the master's name: "
            "redis-sentinel://host:port/name");
  EXPECT_EQ(url_error("redis-sentinel:///m"),
            "bad driver URL \"redis-sentinel:///m\": a sentinel URL needs at least one sentinel "
            "host:port");
  EXPECT_EQ(url_error("redis-sentinel://s1,,s2/m"),
            "bad driver URL \"redis-sentinel://s1,,s2/m\": empty sentinel address in the list");
  EXPECT_EQ(url_error("redis-sentinel://s1:0/m"),
            "bad driver URL \"redis-sentinel://s1:0/m\": port must be a number from 1 to 65535, "
            "got \"0\"");
  EXPECT_EQ(url_error("redis-sentinel://s1/m/x"),
            "bad driver URL \"redis-sentinel://s1/m/x\": database must be a non-negative "
            "integer, got \"x\"");
  EXPECT_EQ(url_error("redis-sentinel://s1/m%20x"),
            "bad driver URL \"redis-sentinel://s1/m%20x\": the master name must be letters, "
            "digits, '-', '.', '_' or ':'");
  EXPECT_EQ(url_error("redis-sentinel:"),
            "bad driver URL \"redis-sentinel:\": expected \"//\" after \"redis-sentinel:\"");
}

TEST(DriverUrl, BadHosts) {
  EXPECT_EQ(url_error("redis://::1:6379"),
            "bad driver URL \"redis://::1:6379\": an IPv6 address must be written in brackets, "
            "e.g. redis://[::1]:6379");
  EXPECT_EQ(url_error("redis://[::1"),
            "bad driver URL \"redis://[::1\": unterminated '[' in the host");
  EXPECT_EQ(url_error("redis://[zz]"),
            "bad driver URL \"redis://[zz]\": \"zz\" is not an IPv6 address");
  EXPECT_EQ(url_error("redis://[::1]x"),
            "bad driver URL \"redis://[::1]x\": unexpected text after the IPv6 address");
  EXPECT_EQ(url_error("redis://a b"),
            "bad driver URL \"redis://a b\": \"a b\" is not a valid host name");
}

TEST(DriverUrl, BadPercentEncoding) {
  EXPECT_EQ(url_error("redis://:a%zz@h"),
            "bad driver URL \"redis://:<censored>@h\": bad percent-encoding in the password");
  EXPECT_EQ(url_error("redis://:a%4@h"),
            "bad driver URL \"redis://:<censored>@h\": bad percent-encoding in the password");
}

TEST(DriverUrl, ErrorsNeverShowThePassword) {
  const std::string message = url_error("redis://:hunter2@h:99999");
  EXPECT_EQ(message.find("hunter2"), std::string::npos) << message;
  EXPECT_NE(message.find("redis://:<censored>@h:99999"), std::string::npos) << message;
}

TEST(CensorDriverUrl, ReplacesOnlyThePassword) {
  EXPECT_EQ(censor_driver_url("redis://:pw@h:6379/1#p"), "redis://:<censored>@h:6379/1#p");
  EXPECT_EQ(censor_driver_url("redis://user:pw@h"), "redis://user:<censored>@h");
  EXPECT_EQ(censor_driver_url("redis://pw@h"), "redis://<censored>@h");
  EXPECT_EQ(censor_driver_url("redis://:p@ss@h"), "redis://:<censored>@h");
  EXPECT_EQ(censor_driver_url("redis-sentinel://u:pw@s1,s2/m"),
            "redis-sentinel://u:<censored>@s1,s2/m");
  EXPECT_EQ(censor_driver_url("rediss://:pw@h?ca=/x"), "rediss://:<censored>@h?ca=/x");
}

TEST(CensorDriverUrl, LeavesUrlsWithoutPasswordAlone) {
  EXPECT_EQ(censor_driver_url("redis:"), "redis:");
  EXPECT_EQ(censor_driver_url("redis://h:6379/2#a@b"), "redis://h:6379/2#a@b");
  EXPECT_EQ(censor_driver_url("redis://user:@h"), "redis://user:@h");
  EXPECT_EQ(censor_driver_url("not a url"), "not a url");
}

}  // namespace
}  // namespace hipache
