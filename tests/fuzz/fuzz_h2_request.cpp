// Fuzz target: an HTTP/2 stream's header block as the proxy turns it into the HTTP/1.1 request a
// backend receives. The input is a list of header fields; a block with one nghttp2 would refuse
// (its own nghttp2_check_* functions, as the session applies them) is skipped, the rest go through
// http::H2RequestBuilder, the framing rules for version 20 and our serializer, exactly as an
// exchange forwards a stream. What we would send must parse back, with Beast, as exactly one
// request with that method, target, Host (the :authority when there was one), one Host field, and
// a body framed only by us. An RFC 8441 WebSocket CONNECT must come out as a bodiless upgrade GET
// with exactly our Sec-WebSocket-Key.
//
// Input layout: fields separated by '\n', name and value by the first ':' after position 0 (so
// ":path:/x" is the pseudo-field ":path" with value "/x"); a first byte with bit 0 set means
// DATA follows the header block.
#include <nghttp2/nghttp2.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "http/fields.hpp"
#include "http/framing.hpp"
#include "http/h2_request.hpp"
#include "http/serialize.hpp"

namespace {

namespace bhttp = boost::beast::http;
using namespace hipache::http;

void check(bool condition) {
  if (!condition) __builtin_trap();
}

constexpr std::string_view kKey = "dGhlIHNhbXBsZSBub25jZQ==";

bool nghttp2_accepts(std::string_view name, std::string_view value) {
  if (name.empty()) return false;
  const auto* n = reinterpret_cast<const std::uint8_t*>(name.data());
  const auto* v = reinterpret_cast<const std::uint8_t*>(value.data());
  if (name.front() == ':') {
    // The session checks the pseudo-fields' values as nghttp2_check_method/path/authority do.
    if (name == ":method") return nghttp2_check_method(v, value.size()) != 0;
    if (name == ":path") return nghttp2_check_path(v, value.size()) != 0;
    if (name == ":authority") return nghttp2_check_authority(v, value.size()) != 0;
    return nghttp2_check_header_name(n + 1, name.size() - 1) != 0 &&
           nghttp2_check_header_value_rfc9113(v, value.size()) != 0;
  }
  for (const char c : name) {
    if (c >= 'A' && c <= 'Z') return false;  // HTTP/2 names are lowercase
  }
  if (name == "connection" || name == "transfer-encoding" || name == "upgrade" ||
      name == "keep-alive" || name == "proxy-connection" || (name == "te" && value != "trailers")) {
    return false;  // connection-specific: the stream is refused
  }
  return nghttp2_check_header_name(n, name.size()) != 0 &&
         nghttp2_check_header_value_rfc9113(v, value.size()) != 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const bool has_body = (data[0] & 1) != 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);

  HeaderMemory memory;
  Request request{Request::header_type(memory.allocator())};
  H2RequestBuilder builder(request);
  std::string authority;
  std::size_t start = 0;
  while (start <= input.size()) {
    const auto end = std::min(input.find('\n', start), input.size());
    const auto line = input.substr(start, end - start);
    start = end + 1;
    const auto colon = line.find(':', 1);
    if (colon == std::string_view::npos) continue;
    const auto name = line.substr(0, colon);
    const auto value = line.substr(colon + 1);
    if (!nghttp2_accepts(name, value)) return 0;  // nghttp2 resets such a stream
    if (name == ":authority") authority = value;
    builder.add(name, value);
  }
  if (builder.finish(kKey) != H2RequestError::none) return 0;
  check(request.version() == 20);
  const bool websocket = builder.websocket();
  if (websocket) check(!authority.empty() && request.method() == bhttp::verb::get);
  check(request.method() != bhttp::verb::connect);
  const RequestFields fields(request);
  // A WebSocket's DATA frames are its tunnel's bytes, never a body (http2_connection.cpp).
  const auto framing =
      request_framing(fields.framing, 20, ParsedFraming{false, {}, has_body && !websocket});
  if (!framing.ok() || fields.host_count > 1) return 0;  // the exchange answers 400
  if (!authority.empty()) check(request[bhttp::field::host] == authority);
  if (websocket) check(framing.framing == BodyFraming::none);

  // As the exchange forwards it: HTTP/1.1, hop-by-hop fields gone (an upgrade's put back), our
  // framing.
  remove_hop_by_hop(request);
  if (websocket) {
    request.set(bhttp::field::connection, "Upgrade");
    request.set(bhttp::field::upgrade, "websocket");
  }
  request.version(11);
  std::string head;
  serialize_header(request, AddedFields{}, framing, head);
  // A body is appended as its framing announces it: only lengths worth building here.
  if (framing.framing == BodyFraming::content_length && framing.length > (1 << 16)) return 0;
  std::string wire = head;
  if (framing.framing == BodyFraming::content_length) wire.append(framing.length, 'b');
  if (framing.framing == BodyFraming::chunked) wire += "1\r\nb\r\n0\r\n\r\n";

  bhttp::request_parser<bhttp::string_body> parser;
  parser.header_limit(1 << 20);
  parser.body_limit(1 << 20);
  boost::system::error_code ec;
  std::size_t used = 0;
  // put() stops after the header: feed on until the message is done.
  while (!ec && !parser.is_done() && used < wire.size()) {
    used += parser.put(boost::asio::buffer(wire.data() + used, wire.size() - used), ec);
  }
  check(!ec);
  check(parser.is_done() && used == wire.size());  // exactly one request, nothing left over
  const auto& parsed = parser.get();
  check(parsed.method_string() == request.method_string());
  check(parsed.target() == request.target());
  std::size_t hosts = 0;
  for (const auto& field : parsed) hosts += field.name() == bhttp::field::host;
  check(hosts <= 1);
  if (websocket) {
    std::size_t keys = 0;
    for (const auto& field : parsed) keys += field.name() == bhttp::field::sec_websocket_key;
    check(keys == 1 && parsed[bhttp::field::sec_websocket_key] == kKey);
    check(parsed[bhttp::field::upgrade] == "websocket");
    check(parsed.method() == bhttp::verb::get);
  }
  if (!authority.empty()) check(parsed[bhttp::field::host] == authority);
  check(parsed.body().size() == (framing.framing == BodyFraming::content_length ? framing.length
                                 : framing.framing == BodyFraming::chunked      ? 1
                                                                                : 0));
  return 0;
}
