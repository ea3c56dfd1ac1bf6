// Relaying one message body between two connections: decoded by the parser of the side it
// comes from, written in the framing of the forwarded message (http::BodyEncoder), through at
// most two fixed chunks whatever its size.
#pragma once

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <cassert>
#include <chrono>
#include <string>
#include <tuple>

#include "http/framing.hpp"
#include "http/message.hpp"
#include "http/read.hpp"
#include "http/serialize.hpp"
#include "http/trailers.hpp"
#include "net/stream.hpp"
#include "proxy/relay_chunks.hpp"

namespace hipache::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;

// The outcome of copying one message body from `in` to `out`.
struct BodyRelay {
  boost::system::error_code read_error;
  boost::system::error_code write_error;
  std::uint64_t bytes_written = 0;
  bool body_started = false;  // at least one body byte was consumed from `in`
};

// Beast sizes each read by the buffer's free capacity (at least 512 bytes): without room for a
// whole chunk, a body would move 512 bytes per system call. A body that arrived with its header
// needs no room at all (a pooled backend connection would keep the 64 KB).
template <bool isRequest>
void make_room_for_body(beast::flat_buffer& in_buffer,
                        const http::MessageParser<isRequest>& parser) {
  const auto remaining = parser.content_length_remaining();
  if (!remaining || *remaining > in_buffer.size()) in_buffer.reserve(RelayChunks::kChunkSize);
}

// Reads the next piece of the body behind `parser` into `chunk`: whatever has arrived (read_some,
// not read: streaming answers flow, and the bytes a failing peer did send still reach the other
// side). Returns the bytes now in `chunk`; none only at the end of the body or with an error.
template <bool isRequest, class In>
asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> read_body_piece(
    In& in, beast::flat_buffer& in_buffer, http::MessageParser<isRequest>& parser,
    RelayChunks::Chunk& chunk, std::chrono::seconds timeout) {
  auto& body = parser.get().body();
  for (;;) {
    body.data = chunk.data();
    body.size = chunk.size();
    net::set_deadline(beast::get_lowest_layer(in), timeout);
    auto [ec, n] = co_await http::read_some(in, in_buffer, parser);
    if (ec == boost::beast::http::error::need_buffer) ec = {};
    const std::size_t got = chunk.size() - body.size;
    // Otherwise only framing (a chunk header) was parsed: read on.
    if (ec || got > 0 || parser.is_done()) co_return std::tuple{ec, got};
  }
}

// Once `parser` is done with a chunked body: its trailer section, taken out of the message
// (http/trailers.hpp). An oversized section turns `read_ec` into an error: the body is then
// never completed.
template <bool isRequest>
http::FieldList take_trailers(const http::TrailerSection& section,
                              http::MessageParser<isRequest>& parser,
                              boost::system::error_code& read_ec) {
  http::FieldList trailers;
  if (!read_ec && parser.is_done()) read_ec = section.take(parser.get(), trailers);
  return trailers;
}

// Streams the body behind `parser` (whose header is already read) to `out`, framed as
// `framing` says (our own chunked encoding, with the trailer section of a chunked body in its
// last-chunk, or the bytes as they are under a Content-Length or a close); memory stays bounded
// whatever the size. `head`, if not empty, is a header not written yet: it goes out with the
// first piece of body in one system call (a small answer costs one send), and is left unsent if
// the body fails before any byte of it. A body larger than one
// read moves through two chunks: the next piece is read while the last one is written, as nginx
// and HAProxy do, instead of one side waiting for the other.
template <bool isRequest, class In, class Out>
asio::awaitable<BodyRelay> relay_body(In& in, beast::flat_buffer& in_buffer,
                                      http::MessageParser<isRequest>& parser, Out& out,
                                      std::string& head, http::BodyFraming framing,
                                      RelayChunks& chunks, RelayChunks::Lease& first,
                                      std::chrono::seconds timeout) {
  using namespace asio::experimental::awaitable_operators;
  BodyRelay result;
  http::BodyEncoder encoder(framing);
  http::TrailerSection trailers;
  trailers.remember_header(parser);
  make_room_for_body(in_buffer, parser);
  const auto write_piece =
      [&](RelayChunks::Chunk& chunk, std::size_t size,
          bool last) -> asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> {
    const auto prefix = encoder.prefix(size);
    const auto suffix = encoder.suffix(size, last);
    const std::array<asio::const_buffer, 4> pieces{
        asio::buffer(head), asio::buffer(prefix.data(), prefix.size()),
        asio::buffer(chunk.data(), size), asio::buffer(suffix.data(), suffix.size())};
    net::set_deadline(beast::get_lowest_layer(out), timeout);
    auto [ec, n] = co_await asio::async_write(out, pieces, asio::as_tuple(asio::use_awaitable));
    head.clear();
    // A read overlapping this write must not outlast it (the exchange is over).
    if (ec) beast::get_lowest_layer(in).cancel();
    co_return std::tuple{ec, n};
  };

  RelayChunks::Lease second;  // taken once the body needs more than one read
  RelayChunks::Chunk* filled = &*first;
  auto [read_ec, got] = co_await read_body_piece(in, in_buffer, parser, *filled, timeout);
  for (;;) {
    result.body_started = result.body_started || got > 0;
    if (parser.is_done()) encoder.end_with_trailers(take_trailers(trailers, parser, read_ec));
    if (read_ec) result.read_error = read_ec;
    if (read_ec || parser.is_done()) {
      // The last piece (or all the bytes a failing peer sent); a failed message is never
      // completed towards `out`, which a Content-Length, a missing last chunk or the close
      // then tells.
      const bool complete = !read_ec;
      if (got == 0 && !complete) co_return result;
      if (got == 0 && head.empty() && encoder.suffix(0, complete).empty()) co_return result;
      auto [ec, n] = co_await write_piece(*filled, got, complete);
      result.bytes_written += n;
      result.write_error = ec;
      co_return result;
    }
    assert(got > 0);  // read_body_piece returns nothing only at the end or with an error
    if (!second) second = chunks.take();
    RelayChunks::Chunk* next = filled == &*first ? &*second : &*first;
    // (The operator splices the first result's elements into its own tuple.)
    auto [write_ec, written, read] = co_await (
        write_piece(*filled, got, false) && read_body_piece(in, in_buffer, parser, *next, timeout));
    result.bytes_written += written;
    if (write_ec) {
      result.write_error = write_ec;
      co_return result;
    }
    std::tie(read_ec, got) = read;
    filled = next;
  }
}

// Streams the body behind `parser` to `sink` piece by piece (an HTTP/2 backend's stream, which
// frames it), through `chunk`; a chunked body's trailer section goes to the sink before its last
// piece. Stops with operation_aborted once `stop` is set (the answer is over).
template <class In, class Sink>
asio::awaitable<BodyRelay> relay_body_to_sink(In& in, beast::flat_buffer& in_buffer,
                                              http::RequestParser& parser, Sink& sink,
                                              RelayChunks::Chunk& chunk,
                                              std::chrono::seconds timeout, const bool& stop) {
  BodyRelay result;
  http::TrailerSection trailers;
  trailers.remember_header(parser);
  make_room_for_body(in_buffer, parser);
  while (!stop) {
    auto [ec, got] = co_await read_body_piece(in, in_buffer, parser, chunk, timeout);
    result.body_started = result.body_started || got > 0;
    const bool last = !ec && parser.is_done();
    if (last) {
      const auto fields = take_trailers(trailers, parser, ec);
      if (!ec && !fields.empty()) sink.trailers(fields);
    }
    if (ec) {
      result.read_error = ec;  // a body cut short is never completed towards the backend
      co_return result;
    }
    result.write_error = co_await sink.take(chunk.data(), got, last);
    if (result.write_error) co_return result;
    result.bytes_written += got;
    if (last) co_return result;
  }
  result.read_error = asio::error::operation_aborted;
  co_return result;
}

}  // namespace hipache::proxy
