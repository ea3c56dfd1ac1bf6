// net::Wakeup: a waiting coroutine wakes at notify() (posted, never inside the notifier), a
// notify() with nobody waiting is lost, and a cancelled wait ends with operation_aborted.
#include "net/wakeup.hpp"

#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>

namespace hipache::net {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;

class WakeupTest : public ::testing::Test {
 protected:
  // A coroutine that waits once and records how the wait ended.
  void start_waiter() {
    asio::co_spawn(
        io_,
        [this]() -> asio::awaitable<void> {
          auto [ec] = co_await wakeup_.async_wait(asio::as_tuple(asio::use_awaitable));
          result_ = ec;
        },
        asio::detached);
    io_.poll();  // up to the wait
  }

  asio::io_context io_;
  Wakeup wakeup_{io_.get_executor()};
  std::optional<error_code> result_;
};

TEST_F(WakeupTest, NotifyWakesTheWaiterFromTheLoopNotInside) {
  start_waiter();
  EXPECT_TRUE(wakeup_.waiting());
  EXPECT_FALSE(result_);
  wakeup_.notify();
  EXPECT_FALSE(wakeup_.waiting());
  EXPECT_FALSE(result_);  // posted: the notifier finishes first
  io_.poll();
  ASSERT_TRUE(result_);
  EXPECT_FALSE(*result_);
}

TEST_F(WakeupTest, NotifyWithNobodyWaitingIsLost) {
  wakeup_.notify();
  start_waiter();
  io_.poll();
  EXPECT_FALSE(result_);
  EXPECT_TRUE(wakeup_.waiting());
  wakeup_.notify();
  wakeup_.notify();  // the second finds nobody
  io_.poll();
  ASSERT_TRUE(result_);
  EXPECT_FALSE(*result_);
}

TEST_F(WakeupTest, CancelledWaitEndsWithOperationAborted) {
  asio::cancellation_signal cancel;
  std::optional<error_code> result;
  wakeup_.async_wait(
      asio::bind_cancellation_slot(cancel.slot(), [&](error_code ec) { result = ec; }));
  EXPECT_TRUE(wakeup_.waiting());
  cancel.emit(asio::cancellation_type::terminal);
  EXPECT_FALSE(wakeup_.waiting());
  io_.poll();
  ASSERT_TRUE(result);
  EXPECT_EQ(*result, asio::error::operation_aborted);
  wakeup_.notify();  // nothing left to wake
  io_.poll();
}

TEST_F(WakeupTest, DestroyedWithAWaiterEndsItWithOperationAborted) {
  std::optional<error_code> result;
  {
    Wakeup wakeup(io_.get_executor());
    wakeup.async_wait([&](error_code ec) { result = ec; });
  }
  io_.poll();
  ASSERT_TRUE(result);
  EXPECT_EQ(*result, asio::error::operation_aborted);
}

}  // namespace
}  // namespace hipache::net
