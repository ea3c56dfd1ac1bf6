// Fuzz target: an HTTP/1.x request header as a client sends it, turned into the header block an
// HTTP/2 backend (h2c://, h2://) receives: parsed by the proxy's parser, judged by our framing
// rules, stripped of hop-by-hop fields as the exchange does, then http::add_backend_request_fields
// (src/http/h2_fields.cpp). The block we build must hold the four pseudo-fields first, lowercase
// names, no connection-specific field, no Host, one te: trailers, and a content-length exactly
// when our framing has a length. It is then sent by a real nghttp2 client session and received by
// a real nghttp2 server session: when that server accepts it, it reads exactly the method,
// target, authority (the Host) and fields we meant.
//
// Input layout: byte 0 bit 0: the backend is h2:// (TLS); the rest is the request's bytes.
#include <nghttp2/nghttp2.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/fields.hpp"
#include "http/framing.hpp"
#include "http/h2_fields.hpp"
#include "http/message.hpp"
#include "http/serialize.hpp"

namespace {

namespace bhttp = boost::beast::http;
using namespace hipache;

constexpr std::uint32_t kHeaderLimit = 64 * 1024;  // as src/http/read.hpp

void check(bool condition) {
  if (!condition) __builtin_trap();
}

std::string str(boost::beast::string_view s) {
  return {s.data(), s.size()};
}

struct Received {
  std::vector<std::pair<std::string, std::string>> fields;
  bool request_complete = false;
  bool reset = false;
};

int on_header(nghttp2_session*, const nghttp2_frame*, const std::uint8_t* name,
              std::size_t name_length, const std::uint8_t* value, std::size_t value_length,
              std::uint8_t, void* user) {
  static_cast<Received*>(user)->fields.emplace_back(
      std::string(reinterpret_cast<const char*>(name), name_length),
      std::string(reinterpret_cast<const char*>(value), value_length));
  return 0;
}

int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    static_cast<Received*>(user)->request_complete = true;
  }
  return 0;
}

int on_stream_close(nghttp2_session*, std::int32_t, std::uint32_t error_code, void* user) {
  if (error_code != NGHTTP2_NO_ERROR) static_cast<Received*>(user)->reset = true;
  return 0;
}

// Sends `fields` as a request's HEADERS from a client session into a server session.
Received send_through_nghttp2(const http::H2FieldBlock::List& fields) {
  Received received;
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, &on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, &on_stream_close);
  nghttp2_session* client = nullptr;
  nghttp2_session* server = nullptr;
  nghttp2_session_client_new(&client, callbacks, nullptr);
  nghttp2_session_server_new(&server, callbacks, &received);
  nghttp2_session_callbacks_del(callbacks);
  nghttp2_submit_settings(client, NGHTTP2_FLAG_NONE, nullptr, 0);
  const auto id =
      nghttp2_submit_request(client, nullptr, fields.data(), fields.size(), nullptr, nullptr);
  check(id > 0);  // nghttp2 takes whatever block we build (it checks the peer's, not ours)
  for (;;) {
    const std::uint8_t* data = nullptr;
    const auto n = nghttp2_session_mem_send(client, &data);
    check(n >= 0);
    if (n == 0) break;
    if (nghttp2_session_mem_recv(server, data, static_cast<std::size_t>(n)) < 0) break;
  }
  // A stream error on the server queues an RST_STREAM; it closes the stream when sent.
  while (nghttp2_session_want_write(server) != 0) {
    const std::uint8_t* data = nullptr;
    if (nghttp2_session_mem_send(server, &data) <= 0) break;
  }
  nghttp2_session_del(client);
  nghttp2_session_del(server);
  return received;
}

bool connection_specific(std::string_view name) {
  for (const std::string_view banned :
       {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host"}) {
    if (name == banned) return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const bool tls = (data[0] & 1) != 0;
  http::HeaderMemory memory;
  http::RequestParser parser(std::piecewise_construct, std::make_tuple(),
                             std::make_tuple(memory.allocator()));
  parser.header_limit(kHeaderLimit);
  parser.body_limit(boost::none);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(data + 1, size - 1), ec);
  if (ec || !parser.is_header_done()) return 0;
  auto& request = parser.get();
  const http::RequestFields fields(request);
  const auto framing =
      http::request_framing(fields.framing, request.version(), http::ParsedFraming::of(parser));
  if (!framing.ok() || fields.host_count != 1) return 0;  // 400 (no Host: 400 too)
  const std::string method = str(request.method_string());
  const std::string target = str(request.target());
  const std::string host = str(fields.host);
  if (parser.upgrade()) return 0;  // refused before any block is built
  http::remove_hop_by_hop(request);
  http::AddedFields added;
  added.add("X-Forwarded-For", "::ffff:127.0.0.1");
  added.add("X-Forwarded-Proto", "http");

  http::H2FieldBlock block;
  http::add_backend_request_fields(request, added, framing, tls, block);
  const auto list = block.list();
  const auto text = [](const std::uint8_t* p, std::size_t n) {
    return std::string_view(reinterpret_cast<const char*>(p), n);
  };
  check(list.size() >= 5);
  check(text(list[0].name, list[0].namelen) == ":method" &&
        text(list[0].value, list[0].valuelen) == method);
  check(text(list[1].name, list[1].namelen) == ":scheme" &&
        text(list[1].value, list[1].valuelen) == (tls ? "https" : "http"));
  check(text(list[2].name, list[2].namelen) == ":authority" &&
        text(list[2].value, list[2].valuelen) == host);
  check(text(list[3].name, list[3].namelen) == ":path" &&
        text(list[3].value, list[3].valuelen) == target);
  std::size_t lengths = 0;
  std::size_t tes = 0;
  for (std::size_t i = 4; i < list.size(); ++i) {
    const auto name = text(list[i].name, list[i].namelen);
    const auto value = text(list[i].value, list[i].valuelen);
    check(!name.empty() && name.front() != ':');
    for (const char c : name) check(!(c >= 'A' && c <= 'Z'));
    check(!connection_specific(name));
    if (name == "content-length") {
      ++lengths;
      check(value == std::to_string(framing.length));
    }
    if (name == "te") {
      ++tes;
      check(value == "trailers");
    }
  }
  check(lengths == (framing.framing == http::BodyFraming::content_length ? 1U : 0U));
  check(tes == 1);

  const auto received = send_through_nghttp2(list);
  if (!received.request_complete || received.reset) return 0;  // refused: the attempt fails
  check(received.fields.size() == list.size());
  for (std::size_t i = 0; i < list.size(); ++i) {
    check(received.fields[i].first == text(list[i].name, list[i].namelen));
    check(received.fields[i].second == text(list[i].value, list[i].valuelen));
  }
  return 0;
}
