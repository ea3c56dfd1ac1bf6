// The framing rules of the proxy, for requests and responses alike (docs/security.md, "Framing
// is ours"): which framing a received message has, whether it is refused, and how the message we
// forward is delimited. Pure: no I/O, table-tested (tests/unit/framing_test.cpp) and fuzzed
// (tests/fuzz/fuzz_forward.cpp). What we forward is framed by us alone, never by the received
// Content-Length or Transfer-Encoding fields.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "http/message.hpp"

namespace hipache::http {

// What a header says about its message's framing, gathered field by field (one pass).
struct FramingFields {
  std::size_t transfer_encoding_fields = 0;
  std::size_t codings = 0;   // non-empty elements of all Transfer-Encoding fields together
  bool only_chunked = true;  // every one of those elements is `chunked`
  std::size_t content_length_fields = 0;
  std::size_t content_length_values = 0;        // elements of all Content-Length fields together
  std::optional<std::uint64_t> content_length;  // the value, when every element is that number
  bool content_length_valid = true;  // each element a plain decimal number, all of them equal

  // Feeds one field of the header.
  void add(bhttp::field name, std::string_view value);
  bool has_transfer_encoding() const { return transfer_encoding_fields > 0; }
  bool has_content_length() const { return content_length_fields > 0; }
};

FramingFields read_framing_fields(const MessageFields& fields);

// How the message we forward is delimited.
enum class BodyFraming {
  none,            // no framing field (and no body, unless `close`)
  content_length,  // Content-Length: length
  chunked,         // Transfer-Encoding: chunked, in our own encoding
  close,           // no framing field: the body ends with the connection (HTTP/1.0 clients)
};

enum class FramingError {
  none,
  transfer_coding_not_chunked,   // the combined Transfer-Encoding list is not exactly `chunked`
  transfer_encoding_in_http10,   // RFC 9112 section 6.1: faulty framing
  transfer_encoding_and_length,  // RFC 9112 section 6.3 rule 3
  content_length_repeated,       // a request with two Content-Length fields or a list
  content_length_invalid,        // not a plain decimal number, or differing values
  parser_disagrees,              // Beast's parser read other framing than these rules
};

std::string_view describe(FramingError error);

struct Framing {
  FramingError error = FramingError::none;
  BodyFraming framing = BodyFraming::none;
  std::uint64_t length = 0;  // with BodyFraming::content_length
  bool body = false;         // body bytes follow the forwarded header

  bool ok() const { return error == FramingError::none; }
};

// What the parser made of the header; it decodes the body, so the rules must agree with it.
struct ParsedFraming {
  bool chunked = false;
  std::optional<std::uint64_t> content_length;
  bool body = false;  // the parser expects body bytes (it is not done after the header)

  template <class Parser>
  static ParsedFraming of(const Parser& parser) {
    const auto length = parser.content_length();  // a boost::optional
    return {parser.chunked(), length ? std::optional<std::uint64_t>(*length) : std::nullopt,
            !parser.is_done()};
  }
};

// A request as received from a client (RFC 9112 section 6.3; `version` 20: an HTTP/2 stream,
// whose `parsed.body` says whether DATA follows its header). Refused framing gets 400.
Framing request_framing(const FramingFields& fields, unsigned version, const ParsedFraming& parsed);

struct ResponseContext {
  unsigned status = 200;
  unsigned version = 11;         // of the response
  bool head_request = false;     // it answers a HEAD
  unsigned client_version = 11;  // of the client that gets it
};

// A response from a backend, as the client will get it. Refused framing gets 502.
Framing response_framing(const FramingFields& fields, const ResponseContext& context,
                         const ParsedFraming& parsed);

// RFC 9110 section 15: a status is three digits from 100; 600 to 999, outside the registry
// but used, are passed on. Below 100 a backend's answer is refused (502).
constexpr bool status_is_valid(unsigned status) {
  return status >= 100 && status <= 999;
}

// Interim answers (1xx but 101) come before the final one and carry no body.
constexpr bool status_is_interim(unsigned status) {
  return status < 200 && status != 101;
}

// RFC 9110 section 7.8: a 101 is valid only for a request that asked to upgrade, and only to
// protocols it offered. `offered`: the request's Upgrade field; `chosen`: the response's.
bool upgrade_matches(std::string_view offered, std::string_view chosen);

// A status line without its reason phrase ("HTTP/1.1 200" CRLF), which nginx, HAProxy and Node
// accept but Beast's parser does not: the offset where a space makes it parseable, if `start`
// (the first bytes of a response) begins with one.
std::optional<std::size_t> reasonless_status_line(std::string_view start);

}  // namespace hipache::http
