// The PROXY protocol header parser (net/proxy_header.hpp): versions 1 and 2, what each gives as
// the client address, what is refused, and input that stops part-way through a header.
#include "net/proxy_header.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace hipache::net {
namespace {

using Bytes = std::vector<std::uint8_t>;
constexpr auto kComplete = ProxyHeaderStatus::complete;
constexpr auto kNeedMore = ProxyHeaderStatus::need_more;
constexpr auto kInvalid = ProxyHeaderStatus::invalid;

Bytes text(std::string_view s) {
  return Bytes(s.begin(), s.end());
}

const Bytes kSignature = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

// A v2 header: signature, version/command, family/protocol, length, then `body`.
Bytes v2(std::uint8_t version_command, std::uint8_t family_protocol, const Bytes& body) {
  Bytes out = kSignature;
  out.push_back(version_command);
  out.push_back(family_protocol);
  out.push_back(static_cast<std::uint8_t>(body.size() >> 8));
  out.push_back(static_cast<std::uint8_t>(body.size() & 0xff));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

Bytes concat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// 192.0.2.7:51000 -> 198.51.100.1:80
const Bytes kInetBlock = {192, 0, 2, 7, 198, 51, 100, 1, 0xC7, 0x38, 0x00, 0x50};
// 2001:db8::7 -> 2001:db8::1, ports 51000 and 443
const Bytes kInet6Block = {0x20, 0x01, 0x0d, 0xb8, 0,    0,    0,    0,    0,    0,    0,    0,
                           0,    0,    0,    7,    0x20, 0x01, 0x0d, 0xb8, 0,    0,    0,    0,
                           0,    0,    0,    0,    0,    0,    0,    1,    0xC7, 0x38, 0x01, 0xBB};
// Two TLVs: ALPN "h2" and a NOOP of zero length.
const Bytes kTlvs = {0x01, 0x00, 0x02, 'h', '2', 0x04, 0x00, 0x00};

struct Row {
  std::string name;
  Bytes input;
  ProxyHeaderStatus status;
  std::size_t length;  // complete only
  std::string client;  // complete only; "" = keep the socket's peer
};

std::vector<Row> rows() {
  const std::string v1_tcp4 = "PROXY TCP4 192.0.2.7 198.51.100.1 51000 80\r\n";
  const std::string v1_tcp6 = "PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n";
  const std::string widest =
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535";
  const std::string longest = "PROXY UNKNOWN " + widest + "\r\n";  // 107: the most allowed
  const Bytes v2_inet = v2(0x21, 0x11, kInetBlock);
  return {
      // version 1
      {"v1 TCP4", text(v1_tcp4), kComplete, v1_tcp4.size(), "::ffff:192.0.2.7"},
      {"v1 TCP6", text(v1_tcp6), kComplete, v1_tcp6.size(), "2001:db8::7"},
      {"v1 TCP4, request after", text(v1_tcp4 + "GET / HTTP/1.1\r\n"), kComplete, v1_tcp4.size(),
       "::ffff:192.0.2.7"},
      {"v1 UNKNOWN", text("PROXY UNKNOWN\r\n"), kComplete, 15, ""},
      {"v1 UNKNOWN with addresses", text("PROXY UNKNOWN ::1 ::1 1 2\r\nGET"), kComplete, 27, ""},
      {"v1 longest", text(longest), kComplete, 107, ""},
      {"v1 widest TCP6", text("PROXY TCP6 " + widest + "\r\n"), kComplete, 104,
       "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
      {"v1 ports 0 and 65535", text("PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r\n"), kComplete, 36,
       "::ffff:1.2.3.4"},
      {"v1 108 bytes", text("PROXY UNKNOWN " + std::string(92, 'x') + "\r\n"), kInvalid, 0, ""},
      {"v1 no CRLF in 107 bytes", text("PROXY TCP4 " + std::string(200, '1')), kInvalid, 0, ""},
      {"v1 bare LF", text("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), kInvalid, 0, ""},
      {"v1 lower case", text("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), kInvalid, 0, ""},
      {"v1 TCP5", text("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"), kInvalid, 0, ""},
      {"v1 TCP4 with IPv6", text("PROXY TCP4 ::1 ::1 1 2\r\n"), kInvalid, 0, ""},
      {"v1 TCP6 with IPv4", text("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"), kInvalid, 0, ""},
      {"v1 host name", text("PROXY TCP4 example.com 5.6.7.8 1 2\r\n"), kInvalid, 0, ""},
      {"v1 bad destination", text("PROXY TCP4 1.2.3.4 5.6.7 1 2\r\n"), kInvalid, 0, ""},
      {"v1 port 65536", text("PROXY TCP4 1.2.3.4 5.6.7.8 65536 80\r\n"), kInvalid, 0, ""},
      {"v1 negative port", text("PROXY TCP4 1.2.3.4 5.6.7.8 -1 80\r\n"), kInvalid, 0, ""},
      {"v1 port with leading zero", text("PROXY TCP4 1.2.3.4 5.6.7.8 080 80\r\n"), kInvalid, 0, ""},
      {"v1 port not a number", text("PROXY TCP4 1.2.3.4 5.6.7.8 http 80\r\n"), kInvalid, 0, ""},
      {"v1 missing port", text("PROXY TCP4 1.2.3.4 5.6.7.8 80\r\n"), kInvalid, 0, ""},
      {"v1 extra field", text("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), kInvalid, 0, ""},
      {"v1 trailing space", text("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), kInvalid, 0, ""},
      {"v1 double space", text("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), kInvalid, 0, ""},
      {"v1 nothing after PROXY", text("PROXY \r\n"), kInvalid, 0, ""},
      {"v1 NUL in address", text(std::string("PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n", 33)), kInvalid,
       0, ""},
      // version 2
      {"v2 PROXY INET", v2_inet, kComplete, 28, "::ffff:192.0.2.7"},
      {"v2 PROXY INET6", v2(0x21, 0x21, kInet6Block), kComplete, 52, "2001:db8::7"},
      {"v2 PROXY INET, TLVs", v2(0x21, 0x11, concat(kInetBlock, kTlvs)), kComplete, 36,
       "::ffff:192.0.2.7"},
      {"v2 PROXY INET, request after", concat(v2_inet, text("GET / HTTP/1.1\r\n")), kComplete, 28,
       "::ffff:192.0.2.7"},
      {"v2 LOCAL", v2(0x20, 0x00, {}), kComplete, 16, ""},
      {"v2 LOCAL ignores its addresses", v2(0x20, 0x11, kInetBlock), kComplete, 28, ""},
      {"v2 PROXY UNSPEC", v2(0x21, 0x00, {}), kComplete, 16, ""},
      {"v2 PROXY UNSPEC with bytes", v2(0x21, 0x00, Bytes(5, 0xAA)), kComplete, 21, ""},
      {"v2 PROXY UNIX", v2(0x21, 0x31, Bytes(216, 0)), kComplete, 232, ""},
      {"v2 PROXY INET over UDP", v2(0x21, 0x12, kInetBlock), kComplete, 28, ""},
      {"v2 bad signature",
       [] {
         Bytes b = v2(0x21, 0x11, kInetBlock);
         b[7] = 'X';
         return b;
       }(),
       kInvalid, 0, ""},
      {"v2 version 1 byte", v2(0x11, 0x11, kInetBlock), kInvalid, 0, ""},
      {"v2 command 2", v2(0x22, 0x11, kInetBlock), kInvalid, 0, ""},
      {"v2 family 4", v2(0x21, 0x41, kInetBlock), kInvalid, 0, ""},
      {"v2 protocol 3", v2(0x21, 0x13, kInetBlock), kInvalid, 0, ""},
      {"v2 INET block too short", v2(0x21, 0x11, Bytes(11, 1)), kInvalid, 0, ""},
      {"v2 INET6 block too short", v2(0x21, 0x21, kInetBlock), kInvalid, 0, ""},
      {"v2 TLV past the end", v2(0x21, 0x11, concat(kInetBlock, {0x01, 0x00, 0x05, 'h'})), kInvalid,
       0, ""},
      {"v2 TLV header cut", v2(0x21, 0x11, concat(kInetBlock, {0x01, 0x00})), kInvalid, 0, ""},
      {"v2 oversized", v2(0x21, 0x11, concat(kInetBlock, Bytes(kProxyV2MaxLength, 0))), kInvalid, 0,
       ""},
      {"v2 largest accepted", v2(0x21, 0x00, Bytes(kProxyV2MaxLength - 16, 0)), kComplete,
       kProxyV2MaxLength, ""},
      // neither
      {"HTTP request", text("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), kInvalid, 0, ""},
      {"TLS ClientHello", {0x16, 0x03, 0x01, 0x02, 0x00, 0x01}, kInvalid, 0, ""},
      {"NUL", {0x00}, kInvalid, 0, ""},
      {"empty", {}, kNeedMore, 0, ""},
      // cut short
      {"v1 prefix", text("PROX"), kNeedMore, 0, ""},
      {"v1 without CRLF", text("PROXY TCP4 192.0.2.7 198.51.100.1 51000 80"), kNeedMore, 0, ""},
      {"v1 without LF", text("PROXY TCP4 192.0.2.7 198.51.100.1 51000 80\r"), kNeedMore, 0, ""},
      {"v2 signature part", Bytes(kSignature.begin(), kSignature.begin() + 5), kNeedMore, 0, ""},
      {"v2 fixed part", Bytes(v2_inet.begin(), v2_inet.begin() + 15), kNeedMore, 0, ""},
      {"v2 addresses part", Bytes(v2_inet.begin(), v2_inet.end() - 1), kNeedMore, 0, ""},
      {"v2 bad version before the length",
       Bytes{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x31},
       kInvalid, 0, ""},
  };
}

TEST(ProxyHeaderTest, Table) {
  for (const Row& row : rows()) {
    SCOPED_TRACE(row.name);
    const ProxyHeader header = parse_proxy_header(row.input);
    ASSERT_EQ(header.status, row.status);
    if (row.status == kInvalid) {
      EXPECT_FALSE(header.error.empty());
      continue;
    }
    if (row.status == kNeedMore) continue;
    EXPECT_EQ(header.length, row.length);
    EXPECT_EQ(header.client ? client_text(*header.client) : std::string(), row.client);
  }
}

// Every strict prefix of a complete header needs more; cut anywhere, it parses the same.
TEST(ProxyHeaderTest, EveryPrefixOfAHeaderNeedsMore) {
  for (const Row& row : rows()) {
    if (row.status != kComplete) continue;
    SCOPED_TRACE(row.name);
    for (std::size_t cut = 0; cut < row.length; ++cut) {
      const auto prefix = std::span(row.input).first(cut);
      EXPECT_EQ(parse_proxy_header(prefix).status, kNeedMore) << "cut at " << cut;
    }
  }
}

TEST(ProxyHeaderTest, ClientText) {
  ProxiedAddress v4;
  v4.bytes[10] = v4.bytes[11] = 0xff;
  v4.bytes[12] = 10;
  v4.bytes[15] = 1;
  EXPECT_EQ(client_text(v4), "::ffff:10.0.0.1");
  ProxiedAddress v6;
  v6.bytes[15] = 1;
  EXPECT_EQ(client_text(v6), "::1");
}

}  // namespace
}  // namespace hipache::net
