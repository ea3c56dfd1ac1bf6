// The trailer section of a chunked HTTP/1.1 body (http/trailers.hpp) as Beast's parser really
// leaves it in the message, which fields of it may go on (http/fields.hpp), and the last-chunk
// that carries them (http/serialize.hpp).
#include <gtest/gtest.h>

#include <array>
#include <string>
#include <utility>
#include <vector>

#include "http/fields.hpp"
#include "http/message.hpp"
#include "http/read.hpp"
#include "http/serialize.hpp"
#include "http/trailers.hpp"

namespace hipache::http {
namespace {

// A parsed request: the header first, then (after `section` remembered it) the body to its
// end, as the relay reads it.
struct Parsed {
  HeaderMemory memory;
  RequestParser parser{std::piecewise_construct, std::make_tuple(),
                       std::make_tuple(memory.allocator())};
  TrailerSection section;
  boost::system::error_code error;

  Parsed(std::string_view head, std::string_view body) {
    parser.body_limit(boost::none);
    parser.eager(false);
    boost::system::error_code ec;
    const auto used = parser.put(boost::asio::buffer(head.data(), head.size()), ec);
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_EQ(used, head.size());
    EXPECT_TRUE(parser.is_header_done());
    section.remember_header(parser);
    std::array<char, 64> sink{};
    while (!body.empty() && !parser.is_done()) {
      parser.get().body().data = sink.data();
      parser.get().body().size = sink.size();
      const auto n = parser.put(boost::asio::buffer(body.data(), body.size()), ec);
      body.remove_prefix(n);
      if (ec == bhttp::error::need_buffer) continue;
      if (ec) {
        error = ec;
        return;
      }
    }
  }

  std::vector<std::pair<std::string, std::string>> fields() const {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& field : parser.get()) {
      out.emplace_back(to_std(field.name_string()), to_std(field.value()));
    }
    return out;
  }
};

constexpr std::string_view kChunkedHead =
    "POST /up HTTP/1.1\r\nHost: a.test\r\nX-Sum: header\r\nTransfer-Encoding: chunked\r\n\r\n";

TEST(TrailerSection, TakesExactlyTheSectionsFieldsOutOfTheMessage) {
  // Beast puts a trailer field right after the header fields of its name: the same name as a
  // header field must still be told apart.
  Parsed parsed(kChunkedHead,
                "3\r\nabc\r\n0\r\nX-Sum: trailer\r\nX-New: n\r\nHost: evil.test\r\n"
                "TE: trailers\r\nKeep-Alive: 5\r\nX-Sum: second\r\n\r\n");
  ASSERT_FALSE(parsed.error) << parsed.error.message();
  ASSERT_TRUE(parsed.parser.is_done());
  FieldList trailers;
  EXPECT_FALSE(parsed.section.take(parsed.parser.get(), trailers));
  // Same-named fields keep their order; Host and the hop-by-hop and framing fields stay behind.
  const FieldList expected{{"X-Sum", "trailer"}, {"X-Sum", "second"}, {"X-New", "n"}};
  EXPECT_EQ(trailers, expected);
  const std::vector<std::pair<std::string, std::string>> header{
      {"Host", "a.test"}, {"X-Sum", "header"}, {"Transfer-Encoding", "chunked"}};
  EXPECT_EQ(parsed.fields(), header);
}

TEST(TrailerSection, NoSectionNoFields) {
  Parsed parsed(kChunkedHead, "3\r\nabc\r\n0\r\n\r\n");
  ASSERT_TRUE(parsed.parser.is_done());
  FieldList trailers{{"stale", "x"}};
  EXPECT_FALSE(parsed.section.take(parsed.parser.get(), trailers));
  EXPECT_TRUE(trailers.empty());
  EXPECT_EQ(parsed.fields().size(), 3u);
}

TEST(TrailerSection, ABodyThatIsNotChunkedHasNone) {
  Parsed parsed("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n", "abc");
  ASSERT_TRUE(parsed.parser.is_done());
  FieldList trailers;
  EXPECT_FALSE(parsed.section.take(parsed.parser.get(), trailers));
  EXPECT_TRUE(trailers.empty());
  EXPECT_EQ(parsed.fields().size(), 2u);
}

TEST(TrailerSection, ASectionOverTheHeaderLimitIsAnError) {
  // Counted as HTTP/2 counts a field list: 32 bytes per field on top of name and value. The
  // section itself (3 bytes a field on the wire) would fit the 80 KB read buffer.
  std::string body = "1\r\nx\r\n0\r\n";
  const std::size_t fields = kHeaderLimit / (32 + 1) + 1;  // "a" and an empty value
  for (std::size_t i = 0; i < fields; ++i) body += "a:\r\n";
  body += "\r\n";
  Parsed parsed(kChunkedHead, body);
  ASSERT_FALSE(parsed.error) << parsed.error.message();
  ASSERT_TRUE(parsed.parser.is_done());
  FieldList trailers;
  EXPECT_EQ(parsed.section.take(parsed.parser.get(), trailers), bhttp::error::header_limit);
  EXPECT_TRUE(trailers.empty());
  EXPECT_EQ(parsed.fields().size(), 3u);  // the header is left as it was
}

TEST(ForwardableTrailer, OnlyTokensAndValuesTheNextHopReadsAlike) {
  EXPECT_TRUE(forwardable_trailer("x-checksum", "abc def"));
  EXPECT_TRUE(forwardable_trailer("grpc-status", "0"));
  EXPECT_TRUE(forwardable_trailer("x-empty", ""));
  EXPECT_TRUE(forwardable_trailer("x-obs", "caf\xc3\xa9"));
  EXPECT_FALSE(forwardable_trailer("", "v"));
  EXPECT_FALSE(forwardable_trailer(":status", "200"));
  EXPECT_FALSE(forwardable_trailer("x bad", "v"));
  EXPECT_FALSE(forwardable_trailer("x:bad", "v"));
  EXPECT_FALSE(forwardable_trailer("x-nl", "a\r\nInjected: 1"));
  EXPECT_FALSE(forwardable_trailer("x-lf", "a\nb"));
  EXPECT_FALSE(forwardable_trailer("x-nul", std::string_view("a\0b", 3)));
  EXPECT_FALSE(forwardable_trailer("x-space", " a"));
  EXPECT_FALSE(forwardable_trailer("x-tab", "a\t"));
  for (const auto* name : {"Connection", "keep-alive", "TE", "Trailer", "Transfer-Encoding",
                           "content-length", "Upgrade", "Proxy-Connection", "host"}) {
    EXPECT_FALSE(forwardable_trailer(name, "v")) << name;
  }
}

TEST(BodyEncoder, EndsWithTheTrailersInItsLastChunk) {
  const FieldList trailers{{"X-Sum", "abc"}, {"Host", "evil"}, {"x-bad", "a\r\nb"}};
  BodyEncoder chunked(BodyFraming::chunked);
  chunked.end_with_trailers(trailers);
  EXPECT_EQ(chunked.suffix(3, true), "\r\n0\r\nX-Sum: abc\r\n\r\n");
  EXPECT_EQ(chunked.suffix(0, true), "0\r\nX-Sum: abc\r\n\r\n");
  EXPECT_EQ(chunked.suffix(3, false), "\r\n");
  // None that may go on: the plain last-chunk.
  chunked.end_with_trailers(FieldList{{"Host", "evil"}});
  EXPECT_EQ(chunked.suffix(3, true), "\r\n0\r\n\r\n");
  // A Content-Length body has no place for them.
  BodyEncoder raw(BodyFraming::content_length);
  raw.end_with_trailers(trailers);
  EXPECT_EQ(raw.suffix(3, true), "");
}

}  // namespace
}  // namespace hipache::http
