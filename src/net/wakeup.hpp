// A wake-up call for one coroutine of a worker's single-threaded loop: async_wait() completes
// when notify() is called, or with operation_aborted when the wait is cancelled. A connection's
// writer sleeps on it between answers: a cancelled timer did the same at the price of a timer
// queue insertion and removal per answer; this posts the waiter's handler and nothing else.
// A notify() with no waiter does nothing: the caller keeps its own "work to do" flag and looks
// at it before waiting. (A waiter left at the io_context's end is not destroyed with it: workers
// end with _exit.)
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/assert.hpp>
#include <boost/system/error_code.hpp>
#include <optional>
#include <utility>

namespace hipache::net {

class Wakeup {
 public:
  // `executor` is an io_context's (a worker's loop).
  explicit Wakeup(const boost::asio::any_io_executor& executor)
      : executor_(io_context_executor(executor)) {}
  Wakeup(const Wakeup&) = delete;
  Wakeup& operator=(const Wakeup&) = delete;
  ~Wakeup() { complete(boost::asio::error::operation_aborted); }

  bool waiting() const { return waiter_.has_value(); }

  // Completes with no error at the next notify(); one wait at a time.
  template <class Token>
  auto async_wait(Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [this](auto handler) {
          BOOST_ASSERT(!waiter_);
          waiter_.emplace(std::move(handler));
          // The type-erased handler forwards the waiter's cancellation to a slot of its own.
          slot_ = waiter_->get_cancellation_slot();
          if (slot_.is_connected()) {
            slot_.assign([this](boost::asio::cancellation_type) {
              slot_ = {};  // being run: Asio frees it with the waiter's cancellation state
              complete(boost::asio::error::operation_aborted);
            });
          }
        },
        token);
  }

  void notify() { complete({}); }

 private:
  static boost::asio::io_context::executor_type io_context_executor(
      const boost::asio::any_io_executor& executor) {
    const auto* target = executor.target<boost::asio::io_context::executor_type>();
    BOOST_ASSERT(target != nullptr);
    return *target;
  }

  void complete(boost::system::error_code ec) {
    if (!waiter_) return;
    if (slot_.is_connected()) slot_.clear();
    slot_ = {};
    auto handler = std::move(*waiter_);
    waiter_.reset();
    // Posted, not called: the notifier is in the middle of its own work. (The handler runs on
    // this loop's thread, as its executor wants; posting it bare skips the type-erased
    // executor's work tracking.)
    boost::asio::post(executor_,
                      [handler = std::move(handler), ec]() mutable { std::move(handler)(ec); });
  }

  boost::asio::io_context::executor_type executor_;
  std::optional<boost::asio::any_completion_handler<void(boost::system::error_code)>> waiter_;
  boost::asio::cancellation_slot slot_;
};

}  // namespace hipache::net
