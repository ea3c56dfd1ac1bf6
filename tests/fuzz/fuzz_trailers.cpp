// Fuzz target: the trailer section of a chunked request body (http/trailers.hpp). The bytes are
// a request as a client would send it, parsed in pieces by the proxy's own parser (its field
// memory, 64 KB header limit); the header's fields are remembered once the header is done, as
// the relay does. Once the body is done: the message holds exactly the header's fields again,
// every field taken may go on (a token name, a clean value, no hop-by-hop, framing or Host
// field), and the last-chunk we would write with them, read by the same parser, carries exactly
// those fields.
//
// Input layout: byte 0 picks the piece size (0 = everything at once), the rest is the request.
#include <boost/asio/buffer.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/fields.hpp"
#include "http/message.hpp"
#include "http/read.hpp"
#include "http/serialize.hpp"
#include "http/trailers.hpp"

namespace http = hipache::http;

namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

void check(bool condition) {
  if (!condition) __builtin_trap();
}

Fields copy_fields(const http::MessageFields& fields) {
  Fields out;
  for (const auto& field : fields) {
    out.emplace_back(http::to_std(field.name_string()), http::to_std(field.value()));
  }
  return out;
}

// Parses `stream` (in pieces of `piece` bytes) as one request; on a complete chunked body,
// returns true with its trailer fields taken into `trailers` and `error` set by take().
bool parse(std::string_view stream, std::size_t piece, http::FieldList& trailers,
           boost::system::error_code& error, Fields& header) {
  http::HeaderMemory memory;
  http::RequestParser parser(std::piecewise_construct, std::make_tuple(),
                             std::make_tuple(memory.allocator()));
  parser.header_limit(http::kHeaderLimit);
  parser.body_limit(boost::none);
  http::TrailerSection section;
  bool remembered = false;
  char body[4096];
  std::string buffered;
  for (;;) {
    boost::system::error_code ec;
    for (;;) {
      parser.get().body().data = body;
      parser.get().body().size = sizeof body;
      ec = {};
      const auto used = parser.put(boost::asio::buffer(buffered), ec);
      buffered.erase(0, used);
      if (parser.is_header_done() && !remembered) {
        remembered = true;
        header = copy_fields(parser.get());
        section.remember_header(parser);
      }
      if (ec == http::bhttp::error::need_buffer) continue;
      if (ec || parser.is_done() || used == 0) break;
    }
    if (parser.is_done()) break;
    if ((ec && ec != http::bhttp::error::need_more) || stream.empty()) return false;
    const auto take = piece < stream.size() ? piece : stream.size();
    buffered.append(stream.substr(0, take));
    stream.remove_prefix(take);
  }
  if (!parser.chunked()) return false;
  error = section.take(parser.get(), trailers);
  // Whatever the section held, the message is its header again.
  check(copy_fields(parser.get()) == header);
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t piece = data[0] == 0 ? size : data[0];
  const std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  http::FieldList trailers;
  boost::system::error_code error;
  Fields header;
  if (!parse(stream, piece, trailers, error, header)) return 0;
  if (error) {
    check(error == http::bhttp::error::header_limit && trailers.empty());
    return 0;
  }
  for (const auto& [name, value] : trailers) check(http::forwardable_trailer(name, value));

  // What we would forward, read back by the next hop: exactly these fields.
  const std::string forwarded =
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n" +
      http::last_chunk_with_trailers(trailers);
  http::FieldList read_back;
  boost::system::error_code read_error;
  Fields forwarded_header;
  check(parse(forwarded, forwarded.size(), read_back, read_error, forwarded_header));
  check(!read_error && read_back == trailers);
  return 0;
}
