// Fuzz target: our forwarding path (src/http/), driven as src/proxy/ (the HTTP/1 connection and
// the exchange) drives it.
// A message as received (from a client or a backend) is parsed by the proxy's parser, judged by
// our framing rules, stripped of hop-by-hop fields, serialised by serialize_header() and its body
// re-encoded through BodyEncoder; the bytes we would send are then read back by a fresh, standard
// Beast parser and must be exactly one message, framed by us alone, carrying exactly the body we
// decoded. A body that failed is never completed: then the output must not read as complete.
// The session's reads (http/read.hpp's read_some, proxy/relay.hpp's read_body_piece) and
// relay_body() are coroutines on sockets: they are re-enacted here on an in-memory buffer, step
// for step; the status-line repair is read.hpp's own.
//
// Input layout:
//   byte 0  bit 0     direction: 0 a request from a client, 1 a response from a backend
//           bit 1     (response) it answers a HEAD request
//           bit 2     (response) the client is HTTP/1.0
//           bit 3     (request) trustProxies is set ...
//           bit 7     (request) ... and the client is in it (X-Forwarded-For is appended to)
//           bits 4-6  the body buffer size, an index into kBodyBuffers (the proxy's is 64 KB)
//   byte 1            the size of each arrival (0 = everything at once), as in fuzz_request
//   the rest          the bytes as received: up to kMaxMessages requests, or interim (1xx)
//                     answers and then the final answer
//
// Left out (proxy/exchange.cpp, not reachable from here): absolute-form targets, the length
// limits on method, target and field count, Connection: close when keep-alive is off, the
// x-debug fields, Connection on responses (close/keep-alive), and the 101 tunnel. A close-
// delimited body cut short is not checked: to an HTTP/1.0 client it reads as complete anyway.
#include <array>
#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/fields.hpp"
#include "http/framing.hpp"
#include "http/message.hpp"
#include "http/read.hpp"
#include "http/serialize.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace http = hipache::http;
using boost::system::error_code;

using http::kHeaderLimit;
constexpr std::size_t kUpstreamBufferLimit = 80 * 1024;  // as upstream_pool.hpp
constexpr std::size_t kMaxMessages = 4;                  // pipelined requests on one connection
constexpr std::size_t kMaxInterim = 8;                   // interim answers before the final one
constexpr std::array<std::size_t, 8> kBodyBuffers = {1, 2, 7, 64, 500, 4096, 16384, 65536};
constexpr std::string_view kRemote = "192.0.2.7";

void check(bool condition) {
  if (!condition) __builtin_trap();
}

std::string str(beast::string_view s) {
  return {s.data(), s.size()};
}

// The bytes still to arrive and those arrived but not parsed yet (the session's read buffer).
struct Wire {
  std::string_view rest;
  std::string buffered;
  std::size_t piece = 0;

  bool arrive() {
    if (rest.empty()) return false;
    const std::size_t take = piece == 0 || piece > rest.size() ? rest.size() : piece;
    buffered.append(rest.substr(0, take));
    rest.remove_prefix(take);
    return true;
  }
};

// http::repair_status_line() (read.hpp) on a copy of the buffer in a flat_buffer as large as
// the backend connection's; copied only when there is a line to repair (a header arriving byte
// by byte would otherwise be copied once per byte).
void repair_status_line(std::string& buffer) {
  if (!http::reasonless_status_line(buffer) || buffer.size() > kUpstreamBufferLimit) return;
  beast::flat_buffer flat(kUpstreamBufferLimit);
  flat.commit(asio::buffer_copy(flat.prepare(buffer.size()), asio::buffer(buffer)));
  http::repair_status_line(flat);
  buffer.assign(static_cast<const char*>(flat.data().data()), flat.size());
}

// read.hpp's read_some(): parse what is buffered, read more on need_more, put_eof at
// the end of the input.
template <bool isRequest>
error_code read_some(Wire& wire, bhttp::basic_parser<isRequest>& parser) {
  error_code ec;
  for (bool parse = !wire.buffered.empty();; parse = true) {
    if (parse) {
      if constexpr (!isRequest) {
        if (!parser.is_header_done()) repair_status_line(wire.buffered);
      }
      const std::size_t used = parser.put(asio::buffer(wire.buffered), ec);
      wire.buffered.erase(0, used);
      if (ec != bhttp::error::need_more) return ec;
      ec = {};
    }
    if (!wire.arrive()) {
      if (parser.got_some()) {
        parser.put_eof(ec);
      } else {
        ec = bhttp::error::end_of_stream;
      }
      return ec;
    }
  }
}

// relay.hpp's read_body_piece(): the next piece of body into `chunk`; none only at the end or on
// error.
template <bool isRequest>
std::pair<error_code, std::size_t> read_body_piece(Wire& wire,
                                                   http::MessageParser<isRequest>& parser,
                                                   char* chunk, std::size_t chunk_size) {
  auto& body = parser.get().body();
  for (;;) {
    body.data = chunk;
    body.size = chunk_size;
    auto ec = read_some(wire, parser);
    if (ec == bhttp::error::need_buffer) ec = {};
    const std::size_t got = chunk_size - body.size;
    if (ec || got > 0 || parser.is_done()) return {ec, got};
  }
}

// relay.hpp's relay_body(), writing into `out` instead of a socket. Returns whether the body
// completed; `decoded` gets every body byte written.
template <bool isRequest>
bool relay_body(Wire& wire, http::MessageParser<isRequest>& parser, http::BodyFraming framing,
                std::size_t chunk_size, std::string& out, std::string& decoded) {
  static std::array<char, 65536> chunk;
  http::BodyEncoder encoder(framing);
  const auto write_piece = [&](std::size_t size, bool last) {
    out.append(encoder.prefix(size));
    out.append(chunk.data(), size);
    out.append(encoder.suffix(size, last));
    decoded.append(chunk.data(), size);
  };
  for (;;) {
    const auto [ec, got] = read_body_piece(wire, parser, chunk.data(), chunk_size);
    if (ec || parser.is_done()) {
      const bool complete = !ec;
      if (got == 0 && !complete) return false;
      if (got == 0 && encoder.suffix(0, complete).empty()) return complete;
      write_piece(got, complete);
      return complete;
    }
    write_piece(got, false);
  }
}

template <class Fields>
std::size_t count(const Fields& fields, bhttp::field name) {
  std::size_t n = 0;
  for (const auto& field : fields) n += field.name() == name ? 1 : 0;
  return n;
}

// The tokens of every Connection field: the fields they name must not be forwarded.
template <class Fields>
std::vector<std::string> connection_tokens(const Fields& fields) {
  std::vector<std::string> tokens;
  for (const auto& field : fields) {
    if (field.name() != bhttp::field::connection) continue;
    for (const auto& token : bhttp::token_list(field.value())) tokens.push_back(str(token));
  }
  return tokens;
}

// What a forwarded message's header may carry, whatever it received.
template <class Fields>
void check_fields(const Fields& fields, const http::Framing& framing,
                  const std::vector<std::string>& named, const std::vector<std::string>& ours) {
  const auto lengths = count(fields, bhttp::field::content_length);
  const auto codings = count(fields, bhttp::field::transfer_encoding);
  switch (framing.framing) {
    case http::BodyFraming::content_length:
      check(lengths == 1 && codings == 0);
      check(fields[bhttp::field::content_length] == std::to_string(framing.length));
      break;
    case http::BodyFraming::chunked:
      check(lengths == 0 && codings == 1);
      check(fields[bhttp::field::transfer_encoding] == "chunked");
      break;
    case http::BodyFraming::none:
    case http::BodyFraming::close:
      check(lengths == 0 && codings == 0);
      break;
  }
  for (const auto& field : fields) {
    const auto name = field.name_string();
    bool added = false;
    for (const auto& our : ours) added = added || beast::iequals(name, our);
    if (added) continue;
    switch (field.name()) {
      case bhttp::field::connection:
      case bhttp::field::keep_alive:
      case bhttp::field::proxy_connection:
      case bhttp::field::te:
      case bhttp::field::trailer:
      case bhttp::field::upgrade:
        check(false);
        break;
      case bhttp::field::host:
        continue;  // never removed by a Connection option
      case bhttp::field::content_length:
      case bhttp::field::transfer_encoding:
        continue;  // ours, checked above, even when the received Connection named them
      default:
        break;
    }
    for (const auto& token : named) check(!beast::iequals(name, token));
  }
}

// A fresh, standard Beast parser for what we send. buffer_body, not string_body: string_body
// reserves a whole Content-Length up front, and a valid one may be 2^64-1.
template <bool isRequest>
struct ReadBack {
  bhttp::parser<isRequest, bhttp::buffer_body> parser;
  std::string body;

  // Feeds `out`. Complete: exactly one message using every byte (close framing: ended by the
  // close). Incomplete: a valid beginning of a message that is not complete.
  void read(std::string_view out, bool complete, bool ends_with_close) {
    parser.header_limit(static_cast<std::uint32_t>(out.size() + 1));
    parser.body_limit(boost::none);
    parser.eager(true);
    std::array<char, 4096> piece;
    std::size_t offset = 0;
    error_code ec;
    while (offset < out.size() && !parser.is_done()) {
      parser.get().body().data = piece.data();
      parser.get().body().size = piece.size();
      const std::size_t used = parser.put(asio::buffer(out.substr(offset)), ec);
      offset += used;
      body.append(piece.data(), piece.size() - parser.get().body().size);
      if (ec == bhttp::error::need_buffer) continue;
      if (ec == bhttp::error::need_more) break;
      check(!ec);  // what we send is always valid HTTP, complete or not
      if (used == 0) break;
    }
    if (complete) {
      check(offset == out.size());
      if (ends_with_close && !parser.is_done()) {
        ec = {};
        parser.put_eof(ec);
        check(!ec);
      }
      check(parser.is_done());
    } else {
      check(!parser.is_done());
      if (!ends_with_close) {
        // The next hop sees the connection end: a partial message, never a complete one.
        ec = {};
        parser.put_eof(ec);
        check(ec && !parser.is_done());
      }
    }
  }
};

// serve_one(), prepare_upstream_request() and forward(), for up to kMaxMessages requests.
void forward_requests(Wire& wire, std::uint8_t flags, std::size_t chunk_size) {
  const bool trust_proxies = (flags & 0x08) != 0;
  const bool trusted_client = (flags & 0x80) != 0;
  http::HeaderMemory memory;
  for (std::size_t message = 0; message < kMaxMessages; ++message) {
    memory.release();  // the previous request's parser is gone
    http::RequestParser parser(std::piecewise_construct, std::make_tuple(),
                               std::make_tuple(memory.allocator()));
    parser.header_limit(kHeaderLimit);
    parser.body_limit(boost::none);
    if (read_some(wire, parser)) return;  // a bad or cut header: nothing is forwarded
    auto& request = parser.get();
    const http::RequestFields fields(request);
    const auto framing =
        http::request_framing(fields.framing, request.version(), http::ParsedFraming::of(parser));
    if (!framing.ok() || fields.host_count > 1) return;  // 400
    check(framing.body == !parser.is_done());

    const std::string method = str(request.method_string());
    const std::string target = str(request.target());
    const std::string host = str(fields.host);
    const std::size_t host_count = fields.host_count;
    const bool keep_alive = parser.keep_alive();
    const auto named = connection_tokens(request);

    // prepare_upstream_request(), with a client at kRemote over plain HTTP on port 8080.
    if (fields.expect) request.erase(bhttp::field::expect);
    const bool upgrade = parser.upgrade();
    const std::string protocol = upgrade ? str(request[bhttp::field::upgrade]) : std::string();
    http::remove_hop_by_hop(request);
    std::vector<std::string> ours;
    if (upgrade) {
      request.set(bhttp::field::connection, "Upgrade");
      request.set(bhttp::field::upgrade, protocol);
      ours = {"Connection", "Upgrade"};
      // A backend choosing exactly what was offered is accepted, if anything was offered.
      const bool offers = protocol.find_first_not_of(" \t,") != std::string::npos;
      check(http::upgrade_matches(protocol, protocol) == offers);
    }
    static constexpr std::array<std::string_view, 6> kLookedFor = {
        "X-Debug",           "X-Forwarded-For",      "X-Real-IP",
        "X-Forwarded-Proto", "X-Forwarded-Protocol", "X-Forwarded-Port"};
    auto present = http::find_unknown_fields(request, kLookedFor);
    const bool wants_debug = present[0];
    std::string appended;
    if (trust_proxies && trusted_client) {
      const auto forwarded_for = request["X-Forwarded-For"];
      if (!forwarded_for.empty() && forwarded_for.size() < 8 * 1024) {
        appended = str(forwarded_for) + ", " + std::string(kRemote);
        request.set("X-Forwarded-For", appended);
        ours.emplace_back("X-Forwarded-For");
      }
    } else if (trust_proxies) {
      static constexpr std::string_view kForwardedHeaders[] = {
          "X-Forwarded-For",  "X-Real-IP",        "X-Forwarded-Proto", "X-Forwarded-Protocol",
          "X-Forwarded-Port", "X-Forwarded-Host", "Forwarded"};
      for (const auto name : kForwardedHeaders) request.erase(name);
      present.reset();
      present[0] = wants_debug;
    }
    const std::array<std::string_view, kLookedFor.size()> values = {
        std::string_view(), kRemote, kRemote, "http", "http", "8080"};
    http::AddedFields added;
    for (std::size_t i = 1; i < kLookedFor.size(); ++i) {
      if (!present[i]) {
        added.add(kLookedFor[i], values[i]);
        ours.emplace_back(kLookedFor[i]);
      }
    }
    request.version(11);

    std::string out;
    http::serialize_header(request, added, framing, out);
    std::string decoded;
    const bool complete =
        parser.is_done() || relay_body(wire, parser, framing.framing, chunk_size, out, decoded);

    ReadBack<true> back;
    back.read(out, complete, false);
    if (!complete) return;  // the proxy refuses the client, and the backend connection goes
    const auto& forwarded = back.parser.get();
    check(back.body == decoded);
    check(forwarded.method_string() == method && forwarded.target() == target);
    check(forwarded.version() == 11);
    check(count(forwarded, bhttp::field::host) == host_count);
    if (host_count == 1) check(forwarded[bhttp::field::host] == host);
    check_fields(forwarded, framing, named, ours);
    for (const auto& [name, value] : added) check(forwarded[name] == value);
    if (!appended.empty()) check(forwarded["X-Forwarded-For"] == appended);
    if (!keep_alive || (wire.buffered.empty() && wire.rest.empty())) return;
  }
}

// relay_response(): interim answers (relayed to HTTP/1.1 clients), then the final one.
void forward_response(Wire& wire, std::uint8_t flags, std::size_t chunk_size) {
  const bool head = (flags & 0x02) != 0;
  const unsigned client_version = (flags & 0x04) != 0 ? 10 : 11;
  http::HeaderMemory memory;
  std::optional<http::ResponseParser> parser;
  for (std::size_t interim = 0;; ++interim) {
    if (interim > kMaxInterim) return;
    parser.reset();  // an interim answer's fields go before the next answer's
    memory.release();
    parser.emplace(std::piecewise_construct, std::make_tuple(),
                   std::make_tuple(memory.allocator()));
    parser->body_limit(boost::none);
    parser->header_limit(kHeaderLimit);
    if (head) parser->skip(true);
    if (read_some(wire, *parser)) return;  // 502
    auto& response = parser->get();
    const unsigned status = response.result_int();
    // As relay_response(): a status below 100 is 502, 1xx but 101 are interim answers.
    if (!http::status_is_valid(status)) return;
    if (!http::status_is_interim(status)) break;
    if (client_version < 11) continue;
    // send_interim(): no framing field, no body.
    const auto named = connection_tokens(response);
    const std::string reason = str(response.reason());
    http::remove_hop_by_hop(response);
    response.version(11);
    std::string out;
    http::serialize_header(response, http::Framing{}, out);
    ReadBack<false> back;
    if (head) back.parser.skip(true);
    back.read(out, true, false);
    const auto& forwarded = back.parser.get();
    check(forwarded.result_int() == status && forwarded.reason() == reason);
    check(back.body.empty());
    check_fields(forwarded, http::Framing{}, named, {});
  }

  auto& response = parser->get();
  const unsigned status = response.result_int();
  if (status == 101) return;  // a tunnel, or 502 to a request that did not ask for it
  const auto framing = http::response_framing(http::read_framing_fields(response),
                                              {status, response.version(), head, client_version},
                                              http::ParsedFraming::of(*parser));
  if (!framing.ok()) return;  // 502
  check(framing.body == !parser->is_done());
  const auto named = connection_tokens(response);
  const std::string reason = str(response.reason());
  http::remove_hop_by_hop(response);
  response.version(11);
  std::string out;
  http::serialize_header(response, framing, out);

  // A Content-Length body that came whole with the header leaves as received, unparsed.
  std::optional<std::string> as_received;
  const auto remaining = parser->content_length_remaining();
  if (framing.body && framing.framing == http::BodyFraming::content_length && remaining &&
      *remaining <= wire.buffered.size()) {
    as_received = wire.buffered.substr(0, static_cast<std::size_t>(*remaining));
  }
  std::string decoded;
  const bool complete =
      !framing.body || relay_body(wire, *parser, framing.framing, chunk_size, out, decoded);
  if (as_received) check(complete && decoded == *as_received);

  ReadBack<false> back;
  if (head) back.parser.skip(true);
  const bool ends_with_close = framing.framing == http::BodyFraming::close;
  // A close-delimited body cut short reads as complete to anyone: HTTP/1.0 cannot tell.
  if (!complete && ends_with_close) return;
  back.read(out, complete, ends_with_close);
  if (!complete) return;
  const auto& forwarded = back.parser.get();
  check(forwarded.result_int() == status && forwarded.reason() == reason);
  check(forwarded.version() == 11);
  check(back.body == decoded);
  if (!framing.body) check(decoded.empty());
  check_fields(forwarded, framing, named, {});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::uint8_t flags = data[0];
  const std::size_t chunk_size = kBodyBuffers[(flags >> 4) & 0x07];
  Wire wire;
  wire.piece = data[1];
  wire.rest = std::string_view(reinterpret_cast<const char*>(data) + 2, size - 2);
  if ((flags & 0x01) == 0) {
    forward_requests(wire, flags, chunk_size);
  } else {
    forward_response(wire, flags, chunk_size);
  }
  return 0;
}
