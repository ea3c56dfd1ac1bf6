#include "net/deadline_stream.hpp"

#include <ctime>

namespace hipache::net {

namespace detail {

Clock::time_point coarse_now() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
  return Clock::time_point(std::chrono::duration_cast<Clock::duration>(
      std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec)));
}

}  // namespace detail

DeadlineStream::DeadlineStream(const executor_type& executor)
    : DeadlineStream(socket_type(executor)) {}

DeadlineStream::DeadlineStream(socket_type socket)
    : state_(std::make_shared<detail::DeadlineState>(std::move(socket))) {}

DeadlineStream::~DeadlineStream() {
  if (state_) close();
}

void DeadlineStream::expires_after(Clock::duration timeout) {
  state_->timed_out = false;
  state_->deadline = detail::coarse_now() + timeout;
  // An armed timer fires no later than the old deadline and then looks again; only an earlier
  // deadline needs it re-armed now. (Without a pending operation, begin() arms it.)
  if (state_->armed && state_->timer.expiry() > state_->deadline) arm(state_);
}

void DeadlineStream::expires_never() {
  state_->timed_out = false;
  state_->deadline = Clock::time_point::max();  // an armed timer finds nothing to do
}

void DeadlineStream::cancel() {
  boost::system::error_code ignored;
  state_->socket.cancel(ignored);
}

void DeadlineStream::close() {
  boost::system::error_code ignored;
  state_->socket.close(ignored);
  state_->timer.cancel();
  state_->armed = false;
}

DeadlineStream::socket_type DeadlineStream::release_socket() {
  state_->timer.cancel();
  state_->armed = false;
  state_->deadline = Clock::time_point::max();
  return std::move(state_->socket);
}

void DeadlineStream::arm(const std::shared_ptr<detail::DeadlineState>& state) {
  state->armed = true;
  const unsigned generation = ++state->generation;
  state->timer.expires_at(state->deadline);  // cancels the wait for an older time, if any
  // A weak reference: the timer does not keep a closed stream's state alive.
  state->timer.async_wait([weak = std::weak_ptr(state), generation](boost::system::error_code ec) {
    if (ec) return;  // cancelled: re-armed, or the stream closed
    const auto locked = weak.lock();
    if (!locked || locked->generation != generation) return;  // a newer wait is armed
    on_timer(locked);
  });
}

void DeadlineStream::on_timer(const std::shared_ptr<detail::DeadlineState>& state) {
  state->armed = false;
  if (state->deadline == Clock::time_point::max()) return;
  // The precise clock here (once per timeout period): the coarse one may still read just before
  // the deadline the timer was armed for, and the timer would fire again at once.
  if (Clock::now() < state->deadline) {
    arm(state);  // the deadline moved on since the timer was armed
    return;
  }
  if (state->pending == 0) return;  // an operation started later times out in begin()
  state->timed_out = true;
  boost::system::error_code ignored;
  state->socket.close(ignored);
}

}  // namespace hipache::net
