// Reading a message header from a stream with plain socket reads and parser.put(): what Beast's
// http::async_read_some does (the same errors, the same read sizes) as one coroutine. Beast's
// composed operation nests three operations per read, and when the bytes are already buffered
// (a header the warm wait read, a body that came with its header) it still completes through the
// scheduler; here those bytes are parsed at once.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/read_size.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <cstdint>
#include <cstring>
#include <tuple>

#include "http/framing.hpp"

namespace hipache::http {

// A header block's limit, for requests and responses alike: beyond it a client gets 431 and a
// backend's answer is a 502 (Node's parser allowed 80 KB).
inline constexpr std::uint32_t kHeaderLimit = 64 * 1024;

// A backend's status line without a reason phrase gets the space Beast's parser needs. Beast
// parses nothing before the whole header is buffered, so the line is all there by then. A full
// buffer is left as it is: the parser then refuses the line.
inline void repair_status_line(beast::flat_buffer& buffer) {
  const auto bytes = buffer.data();
  const auto at = reasonless_status_line(
      std::string_view(static_cast<const char*>(bytes.data()), bytes.size()));
  if (!at || buffer.size() >= buffer.max_size()) return;
  const auto size = buffer.size();
  buffer.commit(boost::asio::buffer_copy(buffer.prepare(1), boost::asio::buffer(" ", 1)));
  auto* data = static_cast<char*>(buffer.data().data());
  std::memmove(data + *at + 1, data + *at, size - *at);
  data[*at] = ' ';
}

// Parses what `buffer` holds, reading more from `stream` while the parser needs it; returns
// when the parser completes an element (a header, a body piece) or fails.
template <class Stream, bool isRequest>
boost::asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> read_some(
    Stream& stream, beast::flat_buffer& buffer, bhttp::basic_parser<isRequest>& parser) {
  using boost::system::error_code;
  constexpr auto use_tuple = boost::asio::as_tuple(boost::asio::use_awaitable);
  std::size_t used_total = 0;
  error_code ec;
  // Bytes already buffered are parsed before any read.
  for (bool parse = buffer.size() > 0;; parse = true) {
    if (parse) {
      if constexpr (!isRequest) {
        if (!parser.is_header_done()) repair_status_line(buffer);
      }
      const auto used = parser.put(buffer.data(), ec);
      used_total += used;
      buffer.consume(used);
      if (ec != bhttp::error::need_more) co_return std::tuple{ec, used_total};
      ec = {};
    }
    const auto room = beast::read_size(buffer, 65536);
    if (room == 0) co_return std::tuple{error_code(bhttp::error::buffer_overflow), used_total};
    auto [read_ec, n] = co_await stream.async_read_some(buffer.prepare(room), use_tuple);
    buffer.commit(n);
    if (read_ec == boost::asio::error::eof) {
      if (parser.got_some()) {
        parser.put_eof(ec);
      } else {
        ec = bhttp::error::end_of_stream;
      }
      co_return std::tuple{ec, used_total};
    }
    if (read_ec) co_return std::tuple{read_ec, used_total};
  }
}

// http::async_read_header: read_some() itself. A parser that is not eager stops after each
// element it completes, and a fresh parser's first element is the header, so read_some() returns
// with the whole header or an error. Not a coroutine: no frame of its own.
template <class Stream, bool isRequest>
boost::asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> read_header(
    Stream& stream, beast::flat_buffer& buffer, bhttp::basic_parser<isRequest>& parser) {
  return read_some(stream, buffer, parser);
}

}  // namespace hipache::http
