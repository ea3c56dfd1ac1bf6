// Writing a forwarded message: its header in one contiguous buffer with our own framing field,
// and the framing around its body pieces. Beast's serializer hands the socket one buffer per
// field and walks that sequence several times per write (a visible share of a small request's
// CPU), and it frames by the message's own fields; here the framing is always ours.
#pragma once

#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "http/framing.hpp"
#include "http/message.hpp"

namespace hipache::http {

// Header fields the proxy adds to a message, kept apart from the message's own fields until its
// header is written (as Beast fields they would cost an allocation each, on every request).
struct AddedFields {
  // The five X-Forwarded-* / X-Real-IP fields and a request id.
  std::array<std::pair<std::string_view, std::string_view>, 6> fields{};
  std::size_t count = 0;

  void add(std::string_view name, std::string_view value) { fields.at(count++) = {name, value}; }
  auto begin() const { return fields.begin(); }
  auto end() const { return fields.begin() + static_cast<std::ptrdiff_t>(count); }
};

// "METHOD target HTTP/1.x", the fields, `added`, the framing field of `framing`, the blank line.
void serialize_header(const Request& request, const AddedFields& added, const Framing& framing,
                      std::string& out);
// "HTTP/1.1 status reason" (a missing reason gets the standard one), the fields, the framing
// field, the blank line.
void serialize_header(const Response& response, const Framing& framing, std::string& out);

// The end of a chunked body with trailer fields: the last chunk, "name: value" lines for the
// fields that may go on (forwardable_trailer(), http/fields.hpp), the blank line.
std::string last_chunk_with_trailers(std::span<const std::pair<std::string, std::string>> trailers);

// The bytes around each piece of a body in the forwarded message's framing: nothing, or (ours)
// a chunk-size line before the piece and CRLF after it, and the last-chunk after the last one.
// The trailer section of a received body (http/trailers.hpp, or an HTTP/2 stream's trailers)
// goes into that last-chunk when the forwarded body is chunked; a body forwarded with a
// Content-Length or delimited by the close has no place for it.
class BodyEncoder {
 public:
  explicit BodyEncoder(BodyFraming framing) : chunked_(framing == BodyFraming::chunked) {}

  // Before a piece of `size` bytes; valid until the next call.
  std::string_view prefix(std::size_t size);
  // After it; `last`: the body ends with this piece. Never the last-chunk of a body cut short:
  // a failed message is never completed. Valid until end_with_trailers().
  std::string_view suffix(std::size_t size, bool last) const;
  // The last-chunk carries these trailer fields (those that may go on), when chunked.
  void end_with_trailers(std::span<const std::pair<std::string, std::string>> trailers);

 private:
  bool chunked_;
  std::array<char, 20> size_line_{};  // 16 hex digits and CRLF at most
  std::string end_;                   // CRLF and a last-chunk with trailers, when there are any
};

}  // namespace hipache::http
