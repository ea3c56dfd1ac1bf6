// The framing rules of http/framing.hpp, one row per rule of RFC 9112 section 6 and RFC 9110
// sections 6.4.1, 7.6, 7.8 and 8.6. Each header goes through the proxy's own parser first (Beast,
// with its field memory), so the rules are checked against what that parser really decides.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "http/field_value.hpp"
#include "http/fields.hpp"
#include "http/framing.hpp"
#include "http/message.hpp"
#include "http/serialize.hpp"

namespace hipache::http {
namespace {

constexpr auto kRefusedByParser = static_cast<FramingError>(-1);

struct Expected {
  FramingError error = FramingError::none;
  BodyFraming framing = BodyFraming::none;
  std::uint64_t length = 0;
  bool body = false;
};

struct Row {
  const char* rule;
  std::string head;  // start line and fields, without the blank line
  Expected expected;
  unsigned client_version = 11;  // responses: of the client
  bool head_request = false;     // responses: an answer to HEAD
};

template <bool isRequest>
Framing decide(const Row& row, HeaderMemory& memory, bool& refused_by_parser) {
  MessageParser<isRequest> parser(std::piecewise_construct, std::make_tuple(),
                                  std::make_tuple(memory.allocator()));
  parser.body_limit(boost::none);
  if constexpr (!isRequest) parser.skip(row.head_request);
  const std::string bytes = row.head + "\r\n\r\n";
  boost::system::error_code ec;
  parser.put(boost::asio::buffer(bytes), ec);
  refused_by_parser = ec && ec != bhttp::error::need_more && ec != bhttp::error::need_buffer;
  if (refused_by_parser || !parser.is_header_done()) return {};
  const auto& message = parser.get();
  if constexpr (isRequest) {
    return request_framing(RequestFields(message).framing, message.version(),
                           ParsedFraming::of(parser));
  } else {
    return response_framing(
        read_framing_fields(message),
        {message.result_int(), message.version(), row.head_request, row.client_version},
        ParsedFraming::of(parser));
  }
}

template <bool isRequest>
void check_rows(const std::vector<Row>& rows) {
  for (const auto& row : rows) {
    SCOPED_TRACE(row.rule);
    HeaderMemory memory;
    bool refused_by_parser = false;
    const auto framing = decide<isRequest>(row, memory, refused_by_parser);
    if (row.expected.error == kRefusedByParser) {
      EXPECT_TRUE(refused_by_parser);
      continue;
    }
    ASSERT_FALSE(refused_by_parser);
    EXPECT_EQ(framing.error, row.expected.error) << describe(framing.error);
    if (!framing.ok()) continue;
    EXPECT_EQ(framing.framing, row.expected.framing);
    EXPECT_EQ(framing.length, row.expected.length);
    EXPECT_EQ(framing.body, row.expected.body);
  }
}

constexpr auto kNone = FramingError::none;
constexpr auto kCl = BodyFraming::content_length;
constexpr auto kChunked = BodyFraming::chunked;
constexpr auto kClose = BodyFraming::close;

TEST(RequestFraming, RulesOfRfc9112Section6) {
  check_rows<true>({
      {"6.3 rule 7: no framing field, no body", "GET / HTTP/1.1\r\nHost: a", {}},
      {"6.3 rule 6: Content-Length", "POST / HTTP/1.1\r\nContent-Length: 5", {kNone, kCl, 5, true}},
      {"Content-Length: 0 is forwarded as such",
       "POST / HTTP/1.1\r\nContent-Length: 0",
       {kNone, kCl, 0, false}},
      {"6.3 rule 4: chunked",
       "POST / HTTP/1.1\r\nTransfer-Encoding: chunked",
       {kNone, kChunked, 0, true}},
      {"codings are case-insensitive",
       "POST / HTTP/1.1\r\nTransfer-Encoding: Chunked",
       {kNone, kChunked, 0, true}},
      {"empty list elements are ignored (RFC 9110 5.6.1)",
       "POST / HTTP/1.1\r\nTransfer-Encoding: , chunked",
       {kNone, kChunked, 0, true}},
      {"6.3 rule 4: chunked not final",
       "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip",
       {FramingError::transfer_coding_not_chunked}},
      {"a coding we do not handle before chunked",
       "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked",
       {FramingError::transfer_coding_not_chunked}},
      {"the combined list of two fields: identity then chunked",
       "POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked",
       {FramingError::transfer_coding_not_chunked}},
      {"the combined list of two fields: gzip then chunked",
       "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
       {FramingError::transfer_coding_not_chunked}},
      {"chunked twice in one field",
       "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked",
       {FramingError::transfer_coding_not_chunked}},
      {"chunked twice in two fields (Beast refuses it)",
       "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
       {kRefusedByParser}},
      {"an empty Transfer-Encoding",
       "POST / HTTP/1.1\r\nTransfer-Encoding: ",
       {FramingError::transfer_coding_not_chunked}},
      {"a coding with parameters",
       "POST / HTTP/1.1\r\nTransfer-Encoding: chunked;q=1",
       {FramingError::transfer_coding_not_chunked}},
      {"6.1: Transfer-Encoding in HTTP/1.0 is faulty framing",
       "POST / HTTP/1.0\r\nTransfer-Encoding: chunked",
       {FramingError::transfer_encoding_in_http10}},
      {"6.3 rule 3: both (Beast refuses it)",
       "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked",
       {kRefusedByParser}},
      {"6.3 rule 3: both, the other order",
       "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5",
       {kRefusedByParser}},
      {"6.3 rule 5: differing lengths",
       "POST / HTTP/1.1\r\nContent-Length: 5, 6",
       {kRefusedByParser}},
      {"identical lengths in a list: refused in requests, as nginx",
       "POST / HTTP/1.1\r\nContent-Length: 5, 5",
       {FramingError::content_length_repeated}},
      {"identical lengths in two fields",
       "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5",
       {FramingError::content_length_repeated}},
      {"a sign is not a decimal number",
       "POST / HTTP/1.1\r\nContent-Length: +5",
       {kRefusedByParser}},
      {"hexadecimal is not a decimal number",
       "POST / HTTP/1.1\r\nContent-Length: 0x5",
       {kRefusedByParser}},
      {"a length past 2^64",
       "POST / HTTP/1.1\r\nContent-Length: 18446744073709551616",
       {kRefusedByParser}},
  });
}

TEST(ResponseFraming, RulesOfRfc9112Section6AndRfc9110) {
  check_rows<false>({
      {"6.3 rule 6: Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 5", {kNone, kCl, 5, true}},
      {"Content-Length: 0", "HTTP/1.1 200 OK\r\nContent-Length: 0", {kNone, kCl, 0, false}},
      {"RFC 9110 8.6: identical lengths in a list are one length",
       "HTTP/1.1 200 OK\r\nContent-Length: 5, 5",
       {kNone, kCl, 5, true}},
      {"RFC 9110 8.6: identical lengths in two fields are one length",
       "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5",
       {kNone, kCl, 5, true}},
      {"differing lengths (Beast refuses them)",
       "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6",
       {kRefusedByParser}},
      {"6.3 rule 4: chunked, to an HTTP/1.1 client",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
       {kNone, kChunked, 0, true}},
      {"chunked, to an HTTP/1.0 client: the close delimits it",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
       {kNone, kClose, 0, true},
       10},
      {"6.3 rule 8: delimited by the close, re-chunked for HTTP/1.1",
       "HTTP/1.1 200 OK",
       {kNone, kChunked, 0, true}},
      {"delimited by the close, to an HTTP/1.0 client",
       "HTTP/1.0 200 OK",
       {kNone, kClose, 0, true},
       10},
      {"6.3 rule 4: chunked not final (would be delimited by the close): refused",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip",
       {FramingError::transfer_coding_not_chunked}},
      {"identity alone",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity",
       {FramingError::transfer_coding_not_chunked}},
      {"the combined list of two fields",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
       {FramingError::transfer_coding_not_chunked}},
      {"chunked twice",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked",
       {FramingError::transfer_coding_not_chunked}},
      {"6.1: Transfer-Encoding in an HTTP/1.0 response",
       "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked",
       {FramingError::transfer_encoding_in_http10}},
      {"6.3 rule 3: both",
       "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked",
       {kRefusedByParser}},
      {"6.3 rule 1: a 204 has no body and no length",
       "HTTP/1.1 204 No Content\r\nContent-Length: 10",
       {}},
      {"6.3 rule 1: a 204 with chunked has no body either",
       "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked",
       {}},
      {"RFC 9110 8.6: a 304 may state the length",
       "HTTP/1.1 304 Not Modified\r\nContent-Length: 1234",
       {kNone, kCl, 1234, false}},
      {"a 304 never announces a chunked body",
       "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked",
       {}},
      {"a 304 with a length that is not a number (Beast refuses it)",
       "HTTP/1.1 304 Not Modified\r\nContent-Length: abc",
       {kRefusedByParser}},
      {"an answer to HEAD states the length",
       "HTTP/1.1 200 OK\r\nContent-Length: 99",
       {kNone, kCl, 99, false},
       11,
       true},
      {"an answer to HEAD with chunked: no framing field, no body",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
       {},
       11,
       true},
      {"an answer to HEAD still obeys the coding rules",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip",
       {FramingError::transfer_coding_not_chunked},
       11,
       true},
      {"1xx: no body, no length", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload", {}},
  });
}

TEST(UpgradeMatches, OnlyOfferedProtocols) {
  EXPECT_TRUE(upgrade_matches("websocket", "websocket"));
  EXPECT_TRUE(upgrade_matches("websocket", "WebSocket"));
  EXPECT_TRUE(upgrade_matches("h2c, websocket", "websocket"));
  EXPECT_FALSE(upgrade_matches("websocket", "h2c"));
  EXPECT_FALSE(upgrade_matches("websocket", ""));  // a 101 must name the protocol
  EXPECT_FALSE(upgrade_matches("", "websocket"));
  EXPECT_FALSE(upgrade_matches("websocket", "websocket, h2c"));
}

TEST(ReasonlessStatusLine, OnlyTheMissingReason) {
  EXPECT_EQ(reasonless_status_line("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"), 12U);
  EXPECT_EQ(reasonless_status_line("HTTP/1.0 404\r\n\r\n"), 12U);
  EXPECT_EQ(reasonless_status_line("HTTP/1.1 200 \r\n\r\n"), std::nullopt);  // empty reason
  EXPECT_EQ(reasonless_status_line("HTTP/1.1 200 OK\r\n\r\n"), std::nullopt);
  EXPECT_EQ(reasonless_status_line("HTTP/1.1 20\r\n\r\n"), std::nullopt);
  EXPECT_EQ(reasonless_status_line("HTTP/1.1 200\n\r\n"), std::nullopt);  // bare LF
  EXPECT_EQ(reasonless_status_line("HTTP/1.1 200\r"), std::nullopt);      // not all there yet
}

TEST(RemoveHopByHop, ConnectionNeverRemovesHostOrOurFraming) {
  HeaderMemory memory;
  Request request(std::piecewise_construct, std::make_tuple(), std::make_tuple(memory.allocator()));
  request.insert(bhttp::field::host, "a.test");
  request.insert(bhttp::field::content_length, "5");
  request.insert(bhttp::field::connection, "Host, Content-Length, X-Secret, keep-alive");
  request.insert("X-Secret", "1");
  request.insert("X-Kept", "1");
  request.insert(bhttp::field::te, "trailers");
  request.insert(bhttp::field::keep_alive, "timeout=5");
  remove_hop_by_hop(request);
  std::vector<std::string> names;
  for (const auto& field : request) names.emplace_back(field.name_string());
  EXPECT_EQ(names, (std::vector<std::string>{"Host", "X-Kept"}));
}

TEST(SerializeHeader, OnlyOurFramingField) {
  HeaderMemory memory;
  Response response(std::piecewise_construct, std::make_tuple(),
                    std::make_tuple(memory.allocator()));
  response.version(11);
  response.result(200);
  response.insert("X-A", "1");
  std::string out;
  serialize_header(response, Framing{FramingError::none, BodyFraming::content_length, 42, true},
                   out);
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 42\r\n\r\n");
  serialize_header(response, Framing{FramingError::none, BodyFraming::chunked, 0, true}, out);
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
  serialize_header(response, Framing{FramingError::none, BodyFraming::close, 0, true}, out);
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n");
  response.result(299);  // no standard reason: an empty one
  serialize_header(response, Framing{}, out);
  EXPECT_EQ(out, "HTTP/1.1 299 \r\nX-A: 1\r\n\r\n");
}

TEST(BodyEncoder, LastChunkWithTrailersLeavesHopByHopFieldsOut) {
  const std::vector<std::pair<std::string, std::string>> trailers{
      {"grpc-status", "0"}, {"content-length", "9"}, {"connection", "close"},
      {"host", "x"},        {"trailer", "a"},        {"x-checksum", "abc"}};
  EXPECT_EQ(last_chunk_with_trailers(trailers), "0\r\ngrpc-status: 0\r\nx-checksum: abc\r\n\r\n");
  EXPECT_EQ(last_chunk_with_trailers({}), "0\r\n\r\n");
}

TEST(BodyEncoder, OurChunkedEncoding) {
  BodyEncoder chunked(BodyFraming::chunked);
  EXPECT_EQ(chunked.prefix(255), "ff\r\n");
  EXPECT_EQ(chunked.suffix(255, false), "\r\n");
  EXPECT_EQ(chunked.suffix(255, true), "\r\n0\r\n\r\n");
  EXPECT_EQ(chunked.prefix(0), "");
  EXPECT_EQ(chunked.suffix(0, true), "0\r\n\r\n");
  EXPECT_EQ(chunked.suffix(0, false), "");
  BodyEncoder raw(BodyFraming::content_length);
  EXPECT_EQ(raw.prefix(10), "");
  EXPECT_EQ(raw.suffix(10, true), "");
}

TEST(FieldValue, CrLfAndControlsAreEscaped) {
  EXPECT_TRUE(is_field_value("site\t one \x80"));
  EXPECT_FALSE(is_field_value("site\r\nX-Injected: 1"));
  EXPECT_FALSE(is_field_value(std::string_view("a\0b", 3)));
  EXPECT_EQ(escape_field_value("site\r\nX-Injected: 1"), "site%0D%0AX-Injected: 1");
  EXPECT_EQ(escape_field_value("del\x7f"), "del%7F");
}

}  // namespace
}  // namespace hipache::http
