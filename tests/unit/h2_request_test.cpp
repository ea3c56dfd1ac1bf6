// An HTTP/2 header block as the HTTP/1.1 request the exchange forwards (http/h2_request.hpp),
// and the framing rules for HTTP/2 requests (http/framing.hpp, version 20).
#include "http/h2_request.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/fields.hpp"
#include "http/framing.hpp"
#include "http/read.hpp"

namespace hipache::http {
namespace {

using Block = std::vector<std::pair<std::string, std::string>>;

struct Built {
  H2RequestError error;
  Request request;
  bool websocket = false;
};

constexpr std::string_view kKey = "dGhlIHNhbXBsZSBub25jZQ==";  // RFC 6455 section 1.3's

Built build(const Block& block) {
  Built built{H2RequestError::none, {}};
  H2RequestBuilder builder(built.request);
  for (const auto& [name, value] : block) builder.add(name, value);
  built.error = builder.finish(kKey);
  built.websocket = builder.websocket();
  return built;
}

TEST(H2Request, PseudoFieldsBecomeTheRequestLineAndHost) {
  const auto built = build({{":method", "POST"},
                            {":scheme", "https"},
                            {":authority", "www.example.test"},
                            {":path", "/a?b=c"},
                            {"content-type", "text/plain"}});
  ASSERT_EQ(built.error, H2RequestError::none);
  EXPECT_EQ(built.request.method(), bhttp::verb::post);
  EXPECT_EQ(built.request.target(), "/a?b=c");
  EXPECT_EQ(built.request.version(), 20u);
  EXPECT_EQ(built.request[bhttp::field::host], "www.example.test");
  EXPECT_EQ(built.request[bhttp::field::content_type], "text/plain");
}

TEST(H2Request, AuthorityReplacesAnyHostField) {
  const auto built = build({{":method", "GET"},
                            {":authority", "routed.test"},
                            {":path", "/"},
                            {"host", "other.test"},
                            {"host", "third.test"}});
  ASSERT_EQ(built.error, H2RequestError::none);
  EXPECT_EQ(RequestFields(built.request).host_count, 1u);
  EXPECT_EQ(built.request[bhttp::field::host], "routed.test");
}

TEST(H2Request, HostFieldServesWithoutAuthority) {
  const auto built = build({{":method", "GET"}, {":path", "/"}, {"host", "plain.test"}});
  ASSERT_EQ(built.error, H2RequestError::none);
  EXPECT_EQ(built.request[bhttp::field::host], "plain.test");
}

TEST(H2Request, CookieFieldsAreJoined) {
  const auto built = build({{":method", "GET"},
                            {":path", "/"},
                            {"cookie", "a=1"},
                            {"accept", "*/*"},
                            {"cookie", "b=2"}});
  ASSERT_EQ(built.error, H2RequestError::none);
  EXPECT_EQ(built.request[bhttp::field::cookie], "a=1; b=2");
  EXPECT_EQ(RequestFields(built.request).count, 2u);  // one Cookie, one Accept
}

TEST(H2Request, RefusedBlocks) {
  EXPECT_EQ(build({{":path", "/"}}).error, H2RequestError::missing_fields);
  EXPECT_EQ(build({{":method", "GET"}}).error, H2RequestError::missing_fields);
  EXPECT_EQ(build({{":method", "GET"}, {":path", ""}}).error, H2RequestError::missing_fields);
  EXPECT_EQ(build({{":method", "GET"}, {":path", "/"}, {":status", "200"}}).error,
            H2RequestError::missing_fields);
  EXPECT_EQ(build({{":method", "CONNECT"}, {":authority", "example.test:443"}}).error,
            H2RequestError::connect);
  // Extended CONNECT to anything but websocket, or without the fields RFC 8441 requires.
  EXPECT_EQ(build({{":method", "CONNECT"},
                   {":protocol", "connect-udp"},
                   {":scheme", "https"},
                   {":path", "/chat"},
                   {":authority", "a"}})
                .error,
            H2RequestError::connect);
  EXPECT_EQ(build({{":method", "CONNECT"}, {":protocol", "websocket"}, {":authority", "a"}}).error,
            H2RequestError::missing_fields);
  EXPECT_EQ(build({{":method", "CONNECT"}, {":protocol", "websocket"}, {":path", "/"}}).error,
            H2RequestError::missing_fields);
  // A WebSocket announcing a length: its DATA frames are the tunnel's, not a body.
  for (const char* length : {"0", "5"}) {
    EXPECT_EQ(build({{":method", "CONNECT"},
                     {":protocol", "websocket"},
                     {":path", "/chat"},
                     {":authority", "a"},
                     {"content-length", length}})
                  .error,
              H2RequestError::websocket_body);
  }
  // :protocol on another method (nghttp2 refuses it first).
  EXPECT_EQ(build({{":method", "GET"}, {":protocol", "websocket"}, {":path", "/"}}).error,
            H2RequestError::missing_fields);
}

TEST(H2Request, WebSocketConnectBecomesAnUpgradeGet) {
  const auto built = build({{":method", "CONNECT"},
                            {":protocol", "websocket"},
                            {":scheme", "https"},
                            {":path", "/chat?room=1"},
                            {":authority", "ws.example.test"},
                            {"sec-websocket-version", "13"},
                            {"sec-websocket-protocol", "chat, superchat"},
                            {"sec-websocket-extensions", "permessage-deflate"},
                            {"origin", "https://ws.example.test"}});
  ASSERT_EQ(built.error, H2RequestError::none);
  EXPECT_TRUE(built.websocket);
  EXPECT_EQ(built.request.method(), bhttp::verb::get);
  EXPECT_EQ(built.request.target(), "/chat?room=1");
  EXPECT_EQ(built.request[bhttp::field::host], "ws.example.test");
  EXPECT_EQ(built.request[bhttp::field::connection], "Upgrade");
  EXPECT_EQ(built.request[bhttp::field::upgrade], "websocket");
  EXPECT_EQ(built.request[bhttp::field::sec_websocket_key], kKey);
  EXPECT_EQ(built.request[bhttp::field::sec_websocket_version], "13");
  EXPECT_EQ(built.request[bhttp::field::sec_websocket_protocol], "chat, superchat");
  EXPECT_EQ(built.request[bhttp::field::sec_websocket_extensions], "permessage-deflate");
  EXPECT_EQ(built.request[bhttp::field::origin], "https://ws.example.test");
  // Forwarded as an HTTP/1.1 upgrade: no body, whatever DATA frames follow on the stream.
  EXPECT_EQ(request_framing(RequestFields(built.request).framing, 20, ParsedFraming{}).framing,
            BodyFraming::none);
}

TEST(H2Request, WebSocketKeyOfTheClientIsReplaced) {
  const auto built = build({{":method", "CONNECT"},
                            {":protocol", "WebSocket"},
                            {":path", "/"},
                            {":authority", "a"},
                            {"sec-websocket-key", "chosen-by-client"}});
  ASSERT_EQ(built.error, H2RequestError::none);
  EXPECT_TRUE(built.websocket);
  std::size_t keys = 0;
  for (const auto& field : built.request) keys += field.name() == bhttp::field::sec_websocket_key;
  EXPECT_EQ(keys, 1u);
  EXPECT_EQ(built.request[bhttp::field::sec_websocket_key], kKey);
}

TEST(H2Request, OrdinaryRequestsAreNoWebSocket) {
  EXPECT_FALSE(build({{":method", "GET"}, {":path", "/"}, {":authority", "a"}}).websocket);
}

TEST(H2Request, WebSocketKeyIsTheBase64OfTheNonce) {
  const std::string_view sample = "the sample nonce";
  std::array<std::uint8_t, 16> nonce{};
  std::copy(sample.begin(), sample.end(), nonce.begin());
  EXPECT_EQ(websocket_key(nonce), kKey);
  nonce.fill(0xff);
  EXPECT_EQ(websocket_key(nonce), "/////////////////////w==");
  nonce.fill(0);
  EXPECT_EQ(websocket_key(nonce), "AAAAAAAAAAAAAAAAAAAAAA==");
}

TEST(H2Request, HeaderListBeyondTheLimitIsRefused) {
  Block block{{":method", "GET"}, {":path", "/"}};
  const std::string value(1000, 'v');
  for (std::size_t i = 0; i * 1000 < kHeaderLimit; ++i) block.emplace_back("x-filler", value);
  EXPECT_EQ(build(block).error, H2RequestError::too_large);
}

Framing h2_framing(const Request& request, bool body) {
  return request_framing(RequestFields(request).framing, 20, ParsedFraming{false, {}, body});
}

TEST(H2Request, FramingOfTheForwardedRequest) {
  auto with_length = build({{":method", "POST"}, {":path", "/"}, {"content-length", "5"}});
  auto framing = h2_framing(with_length.request, true);
  EXPECT_EQ(framing.framing, BodyFraming::content_length);
  EXPECT_EQ(framing.length, 5u);
  // A length announced but no DATA to follow (END_STREAM on HEADERS): the two disagree.
  EXPECT_FALSE(h2_framing(with_length.request, false).ok());

  auto streamed = build({{":method", "POST"}, {":path", "/"}});
  EXPECT_EQ(h2_framing(streamed.request, true).framing, BodyFraming::chunked);
  EXPECT_EQ(h2_framing(streamed.request, false).framing, BodyFraming::none);
  EXPECT_FALSE(h2_framing(streamed.request, false).body);

  auto two_lengths = build(
      {{":method", "POST"}, {":path", "/"}, {"content-length", "5"}, {"content-length", "6"}});
  EXPECT_FALSE(h2_framing(two_lengths.request, true).ok());
  auto coded = build({{":method", "POST"}, {":path", "/"}, {"transfer-encoding", "chunked"}});
  EXPECT_FALSE(h2_framing(coded.request, true).ok());
}

}  // namespace
}  // namespace hipache::http
