#include <gtest/gtest.h>

#include "hipache/route.hpp"

namespace hipache {
namespace {

TEST(ParseBackendUrl, HttpWithAndWithoutPort) {
  auto b = parse_backend_url("http://127.0.0.1:8080");
  EXPECT_TRUE(b.valid);
  EXPECT_EQ(b.host, "127.0.0.1");
  EXPECT_EQ(b.port, 8080);
  EXPECT_FALSE(b.tls);
  b = parse_backend_url("http://backend.internal");
  EXPECT_TRUE(b.valid);
  EXPECT_EQ(b.port, 80);
}

TEST(ParseBackendUrl, HttpsDefaultsTo443) {
  const auto b = parse_backend_url("https://secure.internal/path");
  EXPECT_TRUE(b.valid);
  EXPECT_TRUE(b.tls);
  EXPECT_EQ(b.port, 443);
  EXPECT_EQ(b.host, "secure.internal");
}

TEST(ParseBackendUrl, Http2SchemesAndTheirPoolKeys) {
  const auto h2c = parse_backend_url("h2c://10.0.0.1:50051");
  EXPECT_TRUE(h2c.valid);
  EXPECT_TRUE(h2c.http2);
  EXPECT_FALSE(h2c.tls);
  EXPECT_EQ(h2c.port, 50051);
  EXPECT_EQ(h2c.pool_key, "10.0.0.1:50051+h2");
  const auto h2 = parse_backend_url("H2://grpc.internal");
  EXPECT_TRUE(h2.valid);
  EXPECT_TRUE(h2.http2);
  EXPECT_TRUE(h2.tls);
  EXPECT_EQ(h2.port, 443);
  EXPECT_EQ(h2.pool_key, "grpc.internal:443+tls+h2");
  EXPECT_EQ(parse_backend_url("h2c://backend").port, 80);
  EXPECT_FALSE(parse_backend_url("http://x").http2);
  EXPECT_FALSE(parse_backend_url("h2s://x").valid);
  EXPECT_FALSE(parse_backend_url("h3://x").valid);
}

TEST(ParseBackendUrl, PathQueryAndUserinfoAreIgnored) {
  const auto b = parse_backend_url("HTTP://user:pw@10.1.2.3:81/some/path?q#f");
  EXPECT_TRUE(b.valid);
  EXPECT_EQ(b.host, "10.1.2.3");
  EXPECT_EQ(b.port, 81);
  EXPECT_EQ(b.url, "HTTP://user:pw@10.1.2.3:81/some/path?q#f");
}

TEST(ParseBackendUrl, Ipv6Literal) {
  const auto b = parse_backend_url("http://[::1]:9000");
  EXPECT_TRUE(b.valid);
  EXPECT_EQ(b.host, "::1");
  EXPECT_EQ(b.port, 9000);
}

TEST(ParseBackendUrl, Ipv6LiteralIsValidatedAndNormalised) {
  EXPECT_FALSE(parse_backend_url("http://[zzz]:9000").valid);
  EXPECT_FALSE(parse_backend_url("http://[v1.x]:9000").valid);  // IPvFuture: nothing to dial
  const auto b = parse_backend_url("http://[0:0::1]:9000");
  EXPECT_TRUE(b.valid);
  EXPECT_EQ(b.host, "::1");
  EXPECT_EQ(b.pool_key, "::1:9000");
}

TEST(ParseBackendUrl, UserinfoEndsAtTheLastAtSignAndAnEmptyPortIsTheDefault) {
  const auto b = parse_backend_url("http://us@er:p@ss@backend:8081/");
  EXPECT_TRUE(b.valid);
  EXPECT_EQ(b.host, "backend");
  EXPECT_EQ(b.port, 8081);
  EXPECT_EQ(parse_backend_url("https://backend:").port, 443);
}

TEST(ParseBackendUrl, RejectsGarbage) {
  for (const char* bad : {"", "127.0.0.1:80", "ftp://x", "http://", "http://:80", "http://h:0",
                          "http://h:65536", "http://h:8o", "http://[::1", "http://[::1]x",
                          "http://a b:80", "http://h\"x:80", "http://h:80:81", "http://h:+80"}) {
    EXPECT_FALSE(parse_backend_url(bad).valid) << bad;
  }
}

TEST(ParseBackendUrl, BytesNotAllowedInAFieldValueMakeItInvalid) {
  // RFC 9110 section 5.5: the URL is written into x-debug-backend-url.
  using namespace std::string_literals;
  for (const auto& bad : {"http://h:80/\r\nSet-Cookie: a=b"s, "http://h:80/\n"s, "http://h\r:80"s,
                          "http://h:80/\x01"s, "http://h:80/\x7f"s, "http://h:80/\0x"s}) {
    const auto b = parse_backend_url(bad);
    EXPECT_FALSE(b.valid) << bad;
    EXPECT_TRUE(b.pool_key.empty()) << bad;
  }
  // HTAB, SP and obs-text are allowed in a field value: the path is ignored as before.
  for (const auto& good : {"http://h:80/a b"s, "http://h:80/\tx"s, "http://h:80/caf\xc3\xa9"s}) {
    EXPECT_TRUE(parse_backend_url(good).valid) << good;
  }
}

}  // namespace
}  // namespace hipache
