// The HTTP/1 message types of the request path: Beast's parser and fields, with every header
// field of a message taken from a HeaderMemory instead of one malloc per field.
#pragma once

#include <array>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <memory_resource>
#include <string_view>

namespace hipache::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

using FieldAllocator = std::pmr::polymorphic_allocator<char>;
using MessageFields = bhttp::basic_fields<FieldAllocator>;
template <bool isRequest>
using MessageParser = bhttp::parser<isRequest, bhttp::buffer_body, FieldAllocator>;
using RequestParser = MessageParser<true>;
using ResponseParser = MessageParser<false>;
using Request = bhttp::request<bhttp::buffer_body, MessageFields>;
using Response = bhttp::response<bhttp::buffer_body, MessageFields>;

inline std::string_view to_std(beast::string_view s) {
  return {s.data(), s.size()};
}

// Where one message's header fields live: a bump allocator over a block of the session's own
// (more blocks from malloc when a header needs them), emptied whole once the message is done,
// so a typical message allocates nothing. Freed fields are not reused until then; a message's
// fields change a bounded number of times (hop-by-hop removal, Host), and a new parser, with
// release() before it, is made for each message.
class HeaderMemory {
 public:
  FieldAllocator allocator() { return FieldAllocator(&resource_); }
  // Only once nothing allocated from here is in use (the parser is gone).
  void release() { resource_.release(); }

 private:
  static constexpr std::size_t kBlockSize = 1024;
  alignas(std::max_align_t) std::array<std::byte, kBlockSize> block_;
  std::pmr::monotonic_buffer_resource resource_{block_.data(), block_.size()};
};

}  // namespace hipache::http
