#include "proxy/idle_connections.hpp"

#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/co_spawn.hpp>
#include <memory>

#include "proxy/proxy_context.hpp"

namespace hipache::proxy {

namespace asio = boost::asio;
using boost::system::error_code;

// Allocates exactly what is asked. Asio gives a handler with std::allocator its per-thread
// recycling allocator, which would hand the small readiness wait of a parked connection the last
// freed operation block, often a 600-byte one, for as long as the client stays idle.
template <class T>
struct ExactAllocator : std::allocator<T> {
  using value_type = T;
  ExactAllocator() = default;
  template <class U>
  explicit ExactAllocator(const ExactAllocator<U>& /*other*/) {}
};

struct IdleConnections::Parked final : DrainableSession {
  Parked(asio::ip::tcp::socket s, ClientFacts f) : socket(std::move(s)), facts(std::move(f)) {}

  // Closing cancels the readiness wait; its handler then forgets this connection.
  void close_if_idle() override { close(); }
  void close() {
    if (closed) return;
    closed = true;
    error_code ignored;
    socket.close(ignored);
  }

  asio::ip::tcp::socket socket;
  ClientFacts facts;
  Clock::time_point since = Clock::now();
  bool closed = false;
};

IdleConnections::IdleConnections(asio::any_io_executor executor, std::chrono::seconds timeout)
    : executor_(std::move(executor)),
      timeout_(timeout),
      sweep_timer_(executor_),
      warm_timer_(executor_) {}

IdleConnections::~IdleConnections() = default;

void IdleConnections::park(asio::ip::tcp::socket socket, ClientFacts facts, ProxyContext& ctx) {
  auto& parked = parked_.emplace_back(std::move(socket), std::move(facts));
  const auto position = std::prev(parked_.end());
  ctx.sessions.insert(&parked);
  parked.socket.async_wait(
      asio::ip::tcp::socket::wait_read,
      asio::bind_allocator(ExactAllocator<void>(), [this, position, &ctx](const error_code& ec) {
        Parked& connection = *position;
        ctx.sessions.erase(&connection);
        // Readable: a request, or the client's close, which the new session reads as such.
        if (!ec && !connection.closed && !ctx.draining) {
          asio::co_spawn(
              executor_,
              serve_client(std::move(connection.socket), ctx, nullptr, std::move(connection.facts)),
              log_connection_exception);
        }
        parked_.erase(position);
      }));
  arm_sweep();
}

void IdleConnections::arm_sweep() {
  if (timeout_.count() == 0 || sweep_armed_) return;
  for (const auto& parked : parked_) {
    if (parked.closed) continue;  // its handler has yet to run
    sweep_armed_ = true;
    sweep_timer_.expires_at(parked.since + timeout_);
    sweep_timer_.async_wait([this](const error_code& ec) {
      sweep_armed_ = false;
      if (!ec) sweep();
    });
    return;
  }
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
  for (auto& parked : parked_) {
    if (parked.since + timeout_ > now) break;
    parked.close();
  }
  arm_sweep();
}

}  // namespace hipache::proxy
