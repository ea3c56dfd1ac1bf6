#include "net/proxy_header_read.hpp"

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cassert>
#include <memory>

namespace hipache::net {

namespace {

namespace asio = boost::asio;
using boost::system::error_code;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

// One deadline for the whole header: it cancels the pending peek when it passes. Its handler
// may already be queued when the read ends, so it keeps only a shared flag to look at.
class HeaderDeadline {
 public:
  HeaderDeadline(asio::ip::tcp::socket& socket, std::chrono::seconds timeout)
      : timer_(socket.get_executor()), state_(std::make_shared<State>()) {
    timer_.expires_after(timeout);
    timer_.async_wait([&socket, state = state_](const error_code& ec) {
      if (ec || state->finished) return;
      state->expired = true;
      error_code ignored;
      socket.cancel(ignored);
    });
  }
  ~HeaderDeadline() {
    state_->finished = true;
    timer_.cancel();
  }
  HeaderDeadline(const HeaderDeadline&) = delete;
  HeaderDeadline& operator=(const HeaderDeadline&) = delete;

  bool expired() const { return state_->expired; }

 private:
  struct State {
    bool finished = false;
    bool expired = false;
  };
  asio::steady_timer timer_;
  std::shared_ptr<State> state_;
};

// Takes `count` bytes already seen by a peek out of the socket.
bool consume(asio::ip::tcp::socket& socket, std::uint8_t* into, std::size_t count) {
  while (count > 0) {
    error_code ec;
    const std::size_t n = socket.receive(asio::buffer(into, count), 0, ec);
    if (ec || n == 0) return false;
    into += n;
    count -= n;
  }
  return true;
}

}  // namespace

asio::awaitable<ProxyHeaderRead> read_proxy_header(asio::ip::tcp::socket& socket,
                                                   std::chrono::seconds timeout) {
  HeaderDeadline deadline(socket, timeout);
  std::array<std::uint8_t, kProxyHeaderMaxLength> bytes{};
  std::size_t taken = 0;  // header bytes consumed so far, at the start of `bytes`
  for (;;) {
    if (deadline.expired()) co_return ProxyHeaderRead{false, std::nullopt, "timed out"};
    // A peek: the bytes after the header must stay in the socket for HTTP or TLS.
    auto [ec, n] =
        co_await socket.async_receive(asio::buffer(bytes.data() + taken, bytes.size() - taken),
                                      asio::socket_base::message_peek, kUseTuple);
    if (ec || n == 0) {
      co_return ProxyHeaderRead{false, std::nullopt,
                                deadline.expired() ? "timed out" : "closed before the header"};
    }
    const auto header = parse_proxy_header(std::span(bytes.data(), taken + n));
    switch (header.status) {
      case ProxyHeaderStatus::invalid:
        co_return ProxyHeaderRead{false, std::nullopt, header.error};
      case ProxyHeaderStatus::need_more:
        // All of it belongs to the header: take it, so the next peek waits for new bytes.
        if (!consume(socket, bytes.data() + taken, n)) {
          co_return ProxyHeaderRead{false, std::nullopt, "read failed"};
        }
        taken += n;
        if (taken == bytes.size()) co_return ProxyHeaderRead{false, std::nullopt, "too long"};
        break;
      case ProxyHeaderStatus::complete:
        assert(header.length > taken);  // need_more meant the header is longer than what it saw
        if (!consume(socket, bytes.data() + taken, header.length - taken)) {
          co_return ProxyHeaderRead{false, std::nullopt, "read failed"};
        }
        co_return ProxyHeaderRead{true, header.client, {}};
    }
  }
}

}  // namespace hipache::net
