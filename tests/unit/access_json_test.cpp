// The JSON access-log format: every line is one valid JSON object, whatever bytes the client
// sent; each line is parsed back with nlohmann/json (which rejects invalid UTF-8 and raw
// control characters in strings).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "log/access_log.hpp"

namespace hipache::log {
namespace {

using nlohmann::json;

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
  e.backend = std::chrono::milliseconds(1250);
  // 2026-11-23 18:06:18.042 UTC
  e.when = std::chrono::system_clock::time_point(std::chrono::milliseconds(1795457178042));
  e.request_id = "0123456789abcdef0123456789abcdef";
  e.backend_url = "http://127.0.0.1:9000";
  e.attempts = 2;
  return e;
}

std::string line_of(const AccessLogEntry& e) {
  std::string out;
  format_access_json(e, out);
  return out;
}

// The line must be one line, and parse.
json parsed(const AccessLogEntry& e) {
  const std::string line = line_of(e);
  EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
  for (const char c : line.substr(0, line.size() - 1)) {
    EXPECT_FALSE(static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
        << "raw control byte in " << line;
  }
  return json::parse(line);  // throws (fails the test) on anything but valid JSON
}

TEST(AccessJson, EveryField) {
  EXPECT_EQ(line_of(sample()),
            "{\"time\":\"2026-11-23T18:06:18.042Z\",\"remote\":\"::ffff:127.0.0.1\","
            "\"method\":\"GET\",\"url\":\"/path?q\",\"protocol\":\"HTTP/1.1\",\"status\":200,"
            "\"bytes\":1234,\"referer\":\"http://ref/\",\"user_agent\":\"curl/8\","
            "\"vhost\":\"mysite\",\"total_seconds\":0.004,\"backend_seconds\":1.25,"
            "\"request_id\":\"0123456789abcdef0123456789abcdef\","
            "\"backend\":\"http://127.0.0.1:9000\",\"attempts\":2}\n");
  json object = parsed(sample());
  EXPECT_EQ(object["status"], 200);
  EXPECT_EQ(object["bytes"], 1234);
  EXPECT_DOUBLE_EQ(object["total_seconds"].get<double>(), 0.004);
  EXPECT_DOUBLE_EQ(object["backend_seconds"].get<double>(), 1.25);
  EXPECT_EQ(object["attempts"], 2);
}

TEST(AccessJson, AbsentValuesAreNull) {
  auto e = sample();
  e.identifier = "-";  // no frontend matched
  e.request_id = {};
  e.backend_url = {};
  e.attempts = 0;
  e.referer = {};
  e.total = std::chrono::milliseconds(0);
  e.remote = "::1";
  e.protocol = protocol_name(20);
  json object = parsed(e);
  EXPECT_TRUE(object["vhost"].is_null());
  EXPECT_TRUE(object["request_id"].is_null());
  EXPECT_TRUE(object["backend"].is_null());
  EXPECT_EQ(object["attempts"], 0);
  EXPECT_EQ(object["referer"], "");
  EXPECT_EQ(object["total_seconds"], 0);
  EXPECT_EQ(object["remote"], "::1");
  EXPECT_EQ(object["protocol"], "HTTP/2.0");
}

TEST(AccessJson, TimeKeepsMilliseconds) {
  auto e = sample();
  e.when = std::chrono::system_clock::time_point(std::chrono::milliseconds(1795457178007));
  EXPECT_EQ(parsed(e)["time"], "2026-11-23T18:06:18.007Z");
  e.when = std::chrono::system_clock::time_point(std::chrono::seconds(0));
  EXPECT_EQ(parsed(e)["time"], "1970-01-01T00:00:00.000Z");
}

// Puts `text` in every string field that comes from the client or from Redis; each must read
// back as `expected` (the identifier "-" means no frontend: null).
void expect_round_trip(std::string_view text, const std::string& expected) {
  auto e = sample();
  e.method = e.target = e.referer = e.user_agent = e.identifier = e.request_id = e.backend_url =
      text;
  e.remote = text;
  json object = parsed(e);
  for (const char* field : {"method", "url", "referer", "user_agent", "request_id", "backend"}) {
    EXPECT_EQ(object[field], expected) << field << " of " << line_of(e);
  }
  EXPECT_EQ(object["vhost"], text == "-" ? json(nullptr) : json(expected)) << line_of(e);
  EXPECT_EQ(object["remote"], expected);
}

TEST(AccessJson, HostileTextStaysInsideItsString) {
  const std::vector<std::string> hostile = {
      "evil\"agent",
      "back\\slash\\",
      "\",\"status\":999,\"x\":\"",
      "\"}\n{\"forged\":true}",
      "line\r\nbreak",
      std::string("nul\0byte", 8),
      "tab\there\x01\x1f\x7f",
      "\\u0000 is not an escape here",
      "</script><script>alert(1)</script>",
  };
  for (const auto& text : hostile) expect_round_trip(text, text);
  auto e = sample();
  e.user_agent = "\",\"status\":999,\"x\":\"";
  EXPECT_EQ(parsed(e)["status"], 200);
  EXPECT_EQ(parsed(e).size(), 15U);  // no field added
}

TEST(AccessJson, WellFormedUtf8IsKept) {
  for (const std::string text :
       {"caf\xc3\xa9", "\xe2\x82\xac 5", "\xf0\x9f\x98\x80", "\xe2\x80\xa8 line separator",
        "\xf4\x8f\xbf\xbf", "\xef\xbf\xbf", "\xed\x9f\xbf"}) {
    expect_round_trip(text, text);
    auto e = sample();
    e.user_agent = text;
    EXPECT_NE(line_of(e).find(text), std::string::npos) << "copied, not escaped";
  }
}

TEST(AccessJson, BytesThatAreNotUtf8ReadAsLatin1) {
  struct Case {
    std::string bytes;
    std::string expected;  // as UTF-8
  };
  const std::vector<Case> cases = {
      {"\xff", "\xc3\xbf"},                                      // never in UTF-8
      {"a\x80z", "a\xc2\x80z"},                                  // lone continuation byte
      {"\xc0\xaf", "\xc3\x80\xc2\xaf"},                          // overlong '/'
      {"\xe0\x80\xaf", "\xc3\xa0\xc2\x80\xc2\xaf"},              // overlong, 3 bytes
      {"\xed\xa0\x80", "\xc3\xad\xc2\xa0\xc2\x80"},              // a surrogate
      {"\xf4\x90\x80\x80", "\xc3\xb4\xc2\x90\xc2\x80\xc2\x80"},  // above U+10FFFF
      {"\xe2\x82", "\xc3\xa2\xc2\x82"},                          // cut short at the end
      {"\xe2\x82x", "\xc3\xa2\xc2\x82x"},                        // cut short before ASCII
      {"\xc3\xa9\xff\xc3\xa9", "\xc3\xa9\xc3\xbf\xc3\xa9"},      // good, bad, good
      {"\xf8\x88\x80\x80\x80", "\xc3\xb8\xc2\x88\xc2\x80\xc2\x80\xc2\x80"},  // 5-byte form
  };
  for (const auto& c : cases) expect_round_trip(c.bytes, c.expected);
}

TEST(AccessJson, EverySingleByteAndPairParses) {
  for (int first = 0; first < 256; ++first) {
    const std::string one(1, static_cast<char>(first));
    std::string latin1;  // the byte as a Latin-1 character, in UTF-8
    if (first < 0x80) {
      latin1 = one;
    } else {
      latin1 += static_cast<char>(0xc0 | (first >> 6));
      latin1 += static_cast<char>(0x80 | (first & 0x3f));
    }
    expect_round_trip(one, latin1);
    for (int second = 0; second < 256; ++second) {
      std::string two = one;
      two += static_cast<char>(second);
      auto e = sample();
      e.user_agent = two;
      EXPECT_NO_THROW(parsed(e)) << first << " " << second;
    }
  }
}

}  // namespace
}  // namespace hipache::log
