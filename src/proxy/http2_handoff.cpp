#include "proxy/http2_handoff.hpp"

#include "net/tls.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/read_size.hpp>
#include <string_view>
#include <utility>

#include "proxy/http2_connection.hpp"

namespace hipache::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;

bool chose_h2(net::TlsStream& tls) {
  return net::alpn_selected(tls.native_handle(), "h2");
}

asio::awaitable<PrefaceRead> read_http2_preface(net::AnyStream& client, beast::flat_buffer& buffer,
                                                std::chrono::seconds timeout) {
  constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
  net::set_deadline(client, timeout);
  for (;;) {
    const std::string_view received(static_cast<const char*>(buffer.data().data()), buffer.size());
    const auto compared = std::min(received.size(), kHttp2Preface.size());
    if (received.substr(0, compared) != kHttp2Preface.substr(0, compared)) {
      co_return PrefaceRead::http1;
    }
    if (compared == kHttp2Preface.size()) co_return PrefaceRead::http2;
    // Sized as the header read sizes its first read: the buffer is then the same one.
    auto [ec, n] = co_await client.tcp().async_read_some(
        buffer.prepare(beast::read_size(buffer, 65536)), kUseTuple);
    buffer.commit(n);
    // Never read again after an end: Asio then waits for the socket's next readiness event,
    // and the one the end raised may have been taken already (by the reactor before this
    // read): the session would wait for its header deadline, holding a connection slot.
    if (ec) co_return PrefaceRead::cut_short;
  }
}

Http2Start take_for_http2(net::AnyStream& client, beast::flat_buffer& buffer,
                          const ClientInfo& info) {
  Http2Start start{std::move(client),
                   std::string(static_cast<const char*>(buffer.data().data()), buffer.size()),
                   info};
  buffer.consume(buffer.size());
  return start;
}

}  // namespace hipache::proxy
