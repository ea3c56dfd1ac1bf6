// The trailer section of a chunked HTTP/1.1 body, taken out of the message to go on to the next
// hop. Beast's parser adds the section's fields to the message's own list, each one after the
// header fields of its name, so their place does not tell them apart: the header's fields are
// remembered before the body is read. (Header memory is a monotonic arena, http/message.hpp: a
// field added later never takes the address of one the header had.)
#pragma once

#include <boost/system/error_code.hpp>
#include <string>
#include <utility>
#include <vector>

#include "http/message.hpp"

namespace hipache::http {

// Header or trailer fields on their way to the next hop (names as received).
using FieldList = std::vector<std::pair<std::string, std::string>>;

class TrailerSection {
 public:
  // Before the body is read, once the header's fields are as they will stay. A body that is
  // not chunked has no trailer section: nothing is remembered (nor allocated).
  template <bool isRequest>
  void remember_header(const MessageParser<isRequest>& parser) {
    if (parser.chunked()) remember(parser.get());
  }
  // Once the parser is done: removes the fields the trailer section added from `fields`, and
  // puts those that may go on (forwardable_trailer(), http/fields.hpp) in `out`. A section
  // larger than kHeaderLimit, as HTTP/2 counts a field list (name, value and 32 bytes per
  // field), is an error (header_limit): the body counts as malformed, as an HTTP/2 stream's
  // oversized trailers do.
  boost::system::error_code take(MessageFields& fields, FieldList& out) const;

 private:
  void remember(const MessageFields& fields);

  bool chunked_ = false;
  std::vector<const void*> header_;  // the header's field elements, sorted
};

}  // namespace hipache::http
