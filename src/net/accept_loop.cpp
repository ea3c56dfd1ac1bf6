#include "net/accept_loop.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>

namespace hipache::net {

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
constexpr auto kErrorPause = 50ms;

// Takes one pending connection without waiting (the listening socket is non-blocking): the
// socket, or an error, would_block when there is none (another worker took it). Not Asio's
// synchronous accept: after ECONNABORTED that one polls, blocking, for the next connection.
asio::ip::tcp::socket accept_pending(asio::ip::tcp::acceptor& acceptor,
                                     const asio::ip::tcp& protocol, boost::system::error_code& ec) {
  asio::ip::tcp::socket socket(acceptor.get_executor());
  for (;;) {
    const int fd =
        ::accept4(acceptor.native_handle(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      socket.assign(protocol, fd, ec);
      if (ec) ::close(fd);
      return socket;
    }
    // Gone before it was accepted, or interrupted: the next one, if any.
    if (errno == ECONNABORTED || errno == EPROTO || errno == EINTR) continue;
    ec.assign(errno == EAGAIN ? EWOULDBLOCK : errno, boost::system::system_category());
    return socket;
  }
}

}  // namespace

asio::awaitable<void> accept_loop(asio::ip::tcp::acceptor& acceptor, asio::ip::tcp protocol,
                                  AcceptHandler& handler) {
  asio::steady_timer pause(co_await asio::this_coro::executor);
  boost::system::error_code ec;
  while (acceptor.is_open()) {
    std::tie(ec) = co_await acceptor.async_wait(asio::ip::tcp::acceptor::wait_read, kUseTuple);
    if (!ec) {
      const auto yield = handler.before_accept();
      if (yield.count() > 0) {
        pause.expires_after(yield);
        co_await pause.async_wait(kUseTuple);
      }
      for (bool more = true; more && acceptor.is_open();) {
        auto socket = accept_pending(acceptor, protocol, ec);
        if (ec) break;
        handler.accepted(std::move(socket));
        more = handler.may_accept_more();
      }
      // All pending ones taken (by this worker or another), or enough for this worker's share.
      if (!ec || ec == asio::error::would_block) continue;
    }
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    spdlog::error("accept failed: {}", ec.message());
    pause.expires_after(kErrorPause);
    co_await pause.async_wait(kUseTuple);
  }
}

}  // namespace hipache::net
