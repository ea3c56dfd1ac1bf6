#include "log/access_log.hpp"

#include <gtest/gtest.h>

namespace hipache::log {
namespace {

AccessLogEntry sample() {
  AccessLogEntry e;
  e.remote = "127.0.0.1";
  e.method = "GET";
  e.target = "/path?q";
  e.protocol = protocol_name(11);
  e.status = 200;
  e.bytes_sent = 1234;
  e.referer = "http://ref/";
  e.user_agent = "curl/8";
  e.identifier = "mysite";
  e.total = std::chrono::milliseconds(4);
  e.backend = std::chrono::milliseconds(3);
  // 2026-11-23 18:06:18 UTC
  e.when = std::chrono::system_clock::time_point(std::chrono::seconds(1795457178));
  return e;
}

std::string line_of(const AccessLogEntry& e) {
  std::string out;
  format_access_line(e, out);
  return out;
}

TEST(AccessLine, HipacheFormat) {
  EXPECT_EQ(line_of(sample()),
            "::ffff:127.0.0.1 - - [23/Nov/2026:18:06:18 +0000] \"GET /path?q HTTP/1.1\" 200 1234 "
            "\"http://ref/\" \"curl/8\" \"mysite\" 0.004 0.003\n");
}

TEST(AccessLine, Ipv6RemoteKeptAndHttp10) {
  auto e = sample();
  e.remote = "::1";
  e.protocol = protocol_name(10);
  const auto line = line_of(e);
  EXPECT_EQ(line.rfind("::1 - - [", 0), 0u);
  EXPECT_NE(line.find("HTTP/1.0\""), std::string::npos);
}

TEST(AccessLine, ProtocolNames) {
  EXPECT_EQ(protocol_name(10), "HTTP/1.0");
  EXPECT_EQ(protocol_name(11), "HTTP/1.1");
  EXPECT_EQ(protocol_name(20), "HTTP/2.0");
  auto e = sample();
  e.protocol = protocol_name(20);
  EXPECT_NE(line_of(e).find("\"GET /path?q HTTP/2.0\" 200 "), std::string::npos) << line_of(e);
}

TEST(AccessLine, JsonOnlyFieldsLeaveTheLineAsHipacheWroteIt) {
  auto e = sample();
  e.request_id = "abc123";
  e.backend_url = "http://127.0.0.1:9000";
  e.attempts = 2;
  EXPECT_EQ(line_of(e), line_of(sample()));
}

TEST(AccessLine, SecondsPrintedLikeJavaScript) {
  auto e = sample();
  e.total = std::chrono::milliseconds(0);
  e.backend = std::chrono::milliseconds(1250);
  const auto line = line_of(e);
  EXPECT_NE(line.find("\"mysite\" 0 1.25\n"), std::string::npos) << line;
}

TEST(AccessLine, HostileHeaderValuesCannotBreakTheLine) {
  auto e = sample();
  e.user_agent = "evil\"agent\nsecond line";
  const auto line = line_of(e);
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  EXPECT_NE(line.find("\"evil\\\"agent\\x0asecond line\""), std::string::npos) << line;
}

TEST(AccessLine, ClientChosenRemoteCannotForgeFields) {
  // With trustProxies null the remote field is the client's own X-Real-IP, written unquoted.
  auto e = sample();
  e.remote = "6.6.6.6 - - [01/Jan/2000:00:00:00 +0000] \"GET /admin HTTP/1.1\" 200 0\nforged";
  const auto line = line_of(e);
  EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
  EXPECT_EQ(line.find(' '), line.find(" - - [23/Nov/2026:18:06:18 +0000]")) << line;
  EXPECT_EQ(line.rfind("6.6.6.6\\x20-\\x20-\\x20[01/Jan/2000:00:00:00\\x20+0000]\\x20\\\"GET", 0),
            0u)
      << line;

  const std::string controls("a\tb\"c\\d\x7f\x01", 9);  // e.remote is a view
  e.remote = controls;
  EXPECT_EQ(line_of(e).rfind("a\\x09b\\\"c\\\\d\\x7f\\x01 - - [", 0), 0u) << line_of(e);
}

TEST(AccessLine, MissingRefererIsEmptyQuotes) {
  auto e = sample();
  e.referer = {};
  EXPECT_NE(line_of(e).find(" 200 1234 \"\" \"curl/8\""), std::string::npos);
}

}  // namespace
}  // namespace hipache::log
