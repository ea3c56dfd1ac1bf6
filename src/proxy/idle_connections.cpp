#include "proxy/idle_connections.hpp"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <utility>

#include "proxy/handover.hpp"
#include "proxy/proxy_context.hpp"

namespace hipache::proxy {

namespace asio = boost::asio;
using boost::system::error_code;

struct IdleConnections::Parked {
  Parked(int descriptor, asio::ip::tcp protocol, std::uint64_t served,
         const std::optional<net::ProxiedAddress>& client)
      : fd(descriptor), v6(protocol == asio::ip::tcp::v6()), proxied(client), requests(served) {}
  // Closing the descriptor also takes it out of the epoll set (it has no duplicates).
  ~Parked() {
    if (fd >= 0) ::close(fd);
  }
  Parked(const Parked&) = delete;
  Parked& operator=(const Parked&) = delete;

  int fd;  // -1 once a new session owns it
  bool v6;
  std::optional<net::ProxiedAddress> proxied;  // from a PROXY header
  std::uint64_t requests;                      // served on this connection so far
  Clock::time_point since = Clock::now();
  std::pmr::list<Parked>::iterator position;  // its own, for the readiness handler
};

namespace {

int new_epoll_set() {
  const int fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) {
    throw std::system_error(errno, std::generic_category(), "epoll set for idle connections");
  }
  return fd;
}

}  // namespace

IdleConnections::IdleConnections(asio::any_io_executor executor, std::chrono::seconds timeout)
    : executor_(std::move(executor)),
      timeout_(timeout),
      ready_set_(executor_, new_epoll_set()),
      parked_(&parked_memory_),
      sweep_timer_(executor_),
      warm_timer_(executor_) {}

IdleConnections::~IdleConnections() = default;

void IdleConnections::park(asio::ip::tcp::socket socket, std::uint64_t requests, ProxyContext& ctx,
                           const std::optional<net::ProxiedAddress>& proxied) {
  ctx_ = &ctx;
  error_code ec;
  const auto protocol = socket.local_endpoint(ec).protocol();
  if (ec) return;  // the connection is gone already; the socket closes here
  // Out of Asio: its reactor entry goes back to Asio's pool for the next busy connection.
  const int fd = socket.release(ec);
  if (ec) return;
  if (handover_ != nullptr) {
    handover_->send(fd, requests, proxied);
    return;
  }
  keep(fd, protocol, requests, proxied);
}

void IdleConnections::adopt(int fd, std::uint64_t requests,
                            const std::optional<net::ProxiedAddress>& proxied, ProxyContext& ctx) {
  ctx_ = &ctx;
  sockaddr_storage local{};
  socklen_t length = sizeof local;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) != 0 ||
      (local.ss_family != AF_INET && local.ss_family != AF_INET6)) {
    ::close(fd);  // not a TCP connection: nothing to serve
    return;
  }
  keep(fd, local.ss_family == AF_INET6 ? asio::ip::tcp::v6() : asio::ip::tcp::v4(), requests,
       proxied);
}

void IdleConnections::keep(int fd, asio::ip::tcp protocol, std::uint64_t requests,
                           const std::optional<net::ProxiedAddress>& proxied) {
  auto& parked = parked_.emplace_back(fd, protocol, requests, proxied);
  parked.position = std::prev(parked_.end());
  // Level-triggered: bytes that came before this call are reported as well.
  epoll_event interest{};
  interest.events = EPOLLIN;
  interest.data.ptr = &parked;
  if (::epoll_ctl(ready_set_.native_handle(), EPOLL_CTL_ADD, fd, &interest) != 0) {
    spdlog::warn("cannot park an idle connection ({}); closing it", std::strerror(errno));
    parked_.erase(parked.position);
    return;
  }
  arm_readiness_wait();
  arm_sweep();
}

void IdleConnections::close_all() {
  parked_.clear();
}

void IdleConnections::hand_over_to(ConnectionHandover& handover) {
  handover_ = &handover;
  for (auto& parked : parked_) {
    ::epoll_ctl(ready_set_.native_handle(), EPOLL_CTL_DEL, parked.fd, nullptr);
    handover.send(std::exchange(parked.fd, -1), parked.requests, parked.proxied);
  }
  parked_.clear();
}

std::size_t IdleConnections::size() const {
  return parked_.size();
}

void IdleConnections::arm_readiness_wait() {
  if (readiness_wait_armed_ || parked_.empty()) return;
  readiness_wait_armed_ = true;
  ready_set_.async_wait(asio::posix::stream_descriptor::wait_read, [this](const error_code& ec) {
    readiness_wait_armed_ = false;
    if (ec) return;  // the worker is stopping
    revive_ready();
    arm_readiness_wait();
  });
}

// Readable: a request, or the client's close, which the new session reads as such.
void IdleConnections::revive_ready() {
  std::array<epoll_event, 64> events{};
  int count = 0;
  do {
    count =
        ::epoll_wait(ready_set_.native_handle(), events.data(), static_cast<int>(events.size()), 0);
    for (int i = 0; i < count; ++i) revive(*static_cast<Parked*>(events[i].data.ptr));
  } while (count == static_cast<int>(events.size()));
}

void IdleConnections::revive(Parked& parked) {
  ::epoll_ctl(ready_set_.native_handle(), EPOLL_CTL_DEL, parked.fd, nullptr);
  asio::ip::tcp::socket socket(executor_);
  error_code ec;
  socket.assign(parked.v6 ? asio::ip::tcp::v6() : asio::ip::tcp::v4(), parked.fd, ec);
  if (ec) {
    spdlog::warn("cannot resume an idle connection ({}); closing it", ec.message());
  } else {
    parked.fd = -1;  // the socket's now
    asio::co_spawn(executor_,
                   serve_client(std::move(socket), *ctx_, nullptr, parked.requests, parked.proxied),
                   log_connection_exception);
  }
  parked_.erase(parked.position);
}

void IdleConnections::arm_sweep() {
  if (timeout_.count() == 0 || sweep_armed_ || parked_.empty()) return;
  sweep_armed_ = true;
  sweep_timer_.expires_at(parked_.front().since + timeout_);
  sweep_timer_.async_wait([this](const error_code& ec) {
    sweep_armed_ = false;
    if (!ec) sweep();
  });
}

void IdleConnections::begin_wait(Waiter& waiter) {
  waiter.unlink();
  waiter.since_ = Clock::now();
  waiters_.push_back(waiter);
  arm_warm_timer();
}

void IdleConnections::arm_warm_timer() {
  if (warm_timer_armed_ || waiters_.empty()) return;
  warm_timer_armed_ = true;
  warm_timer_.expires_at(waiters_.front().since_ + kWarmPeriod);
  warm_timer_.async_wait([this](const error_code& ec) {
    warm_timer_armed_ = false;
    if (!ec) end_warm_periods();
  });
}

void IdleConnections::end_warm_periods() {
  const auto now = Clock::now();
  while (!waiters_.empty() && waiters_.front().since_ + kWarmPeriod <= now) {
    Waiter& waiter = waiters_.front();
    waiter.unlink();
    waiter.stop_waiting();
  }
  arm_warm_timer();
}

void IdleConnections::sweep() {
  const auto now = Clock::now();
  while (!parked_.empty() && parked_.front().since + timeout_ <= now) parked_.pop_front();
  arm_sweep();
}

}  // namespace hipache::proxy
