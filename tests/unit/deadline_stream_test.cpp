// DeadlineStream against a real loopback connection: which operations time out, and which a
// moved or removed deadline keeps alive.
#include "net/deadline_stream.hpp"

#include <gtest/gtest.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <thread>

namespace hipache::net {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;
using namespace std::chrono_literals;
using tcp = asio::ip::tcp;

// A connected pair on loopback: `stream` under test, `peer` a plain socket.
class DeadlineStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tcp::acceptor acceptor(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    peer_.connect(acceptor.local_endpoint());
    stream_.emplace(acceptor.accept());
  }

  // Starts a read on the stream; its outcome lands in `read_result_`.
  void start_read() {
    stream_->async_read_some(asio::buffer(read_buffer_), [this](error_code ec, std::size_t n) {
      read_result_ = ec;
      read_bytes_ = n;
    });
  }

  // The peer sends a byte after `delay`.
  void peer_sends_after(std::chrono::milliseconds delay) {
    peer_timer_.expires_after(delay);
    peer_timer_.async_wait([this](error_code ec) {
      if (!ec) asio::write(peer_, asio::buffer("x", 1));
    });
  }

  // Runs the loop until `done` (or a generous bound passed). The loop stops whenever it runs
  // out of work, hence the restart.
  template <class Done>
  void run_until(Done done) {
    const auto bound = std::chrono::steady_clock::now() + 5s;
    while (!done() && std::chrono::steady_clock::now() < bound) {
      io_.restart();
      io_.run_for(10ms);
    }
  }
  void run_until_read_done() {
    run_until([this] { return read_result_.has_value(); });
  }

  asio::io_context io_;
  tcp::socket peer_{io_};
  std::optional<DeadlineStream> stream_;
  asio::steady_timer peer_timer_{io_};
  std::array<char, 16> read_buffer_{};
  std::optional<error_code> read_result_;
  std::size_t read_bytes_ = 0;
};

TEST_F(DeadlineStreamTest, ReadFromASilentPeerTimesOutAndClosesTheSocket) {
  const auto started = std::chrono::steady_clock::now();
  stream_->expires_after(200ms);
  start_read();
  run_until_read_done();
  ASSERT_TRUE(read_result_.has_value());
  EXPECT_EQ(*read_result_, boost::beast::error::timeout);
  EXPECT_GE(std::chrono::steady_clock::now() - started, 150ms) << "the deadline fired early";
  EXPECT_FALSE(stream_->socket().is_open());
  // The peer sees the close.
  std::array<char, 4> sink{};
  error_code peer_ec;
  peer_.read_some(asio::buffer(sink), peer_ec);
  EXPECT_EQ(peer_ec, asio::error::eof);
}

TEST_F(DeadlineStreamTest, ADeadlineMovedOnKeepsAPendingReadAlive) {
  stream_->expires_after(200ms);
  start_read();
  // Before the first deadline, a new one further out: the timer fires at 200 ms, finds the
  // deadline moved, and waits again.
  asio::steady_timer extend(io_, 100ms);
  extend.async_wait([this](error_code ec) {
    if (!ec) stream_->expires_after(600ms);
  });
  peer_sends_after(400ms);
  run_until_read_done();
  ASSERT_TRUE(read_result_.has_value());
  EXPECT_FALSE(*read_result_) << read_result_->message();
  EXPECT_EQ(read_bytes_, 1u);
}

TEST_F(DeadlineStreamTest, ExpiresNeverLiftsTheDeadline) {
  stream_->expires_after(100ms);
  start_read();
  stream_->expires_never();
  peer_sends_after(300ms);
  run_until_read_done();
  ASSERT_TRUE(read_result_.has_value());
  EXPECT_FALSE(*read_result_) << read_result_->message();
}

TEST_F(DeadlineStreamTest, AnEarlierDeadlineReplacesALaterOne) {
  stream_->expires_after(30s);
  start_read();  // arms the timer for 30 s
  stream_->expires_after(100ms);
  run_until_read_done();
  ASSERT_TRUE(read_result_.has_value()) << "the earlier deadline was not honoured";
  EXPECT_EQ(*read_result_, boost::beast::error::timeout);
}

TEST_F(DeadlineStreamTest, ADeadlinePassedWhileIdleFailsTheNextOperation) {
  stream_->expires_after(50ms);
  std::this_thread::sleep_for(150ms);  // nothing pending when the deadline passes
  start_read();
  run_until_read_done();
  ASSERT_TRUE(read_result_.has_value());
  EXPECT_EQ(*read_result_, boost::beast::error::timeout);
}

TEST_F(DeadlineStreamTest, ANewDeadlineAfterAnIdleExpiryStartsAfresh) {
  stream_->expires_after(50ms);
  std::this_thread::sleep_for(150ms);
  stream_->expires_after(2s);
  start_read();
  peer_sends_after(100ms);
  run_until_read_done();
  ASSERT_TRUE(read_result_.has_value());
  EXPECT_FALSE(*read_result_) << read_result_->message();
}

TEST_F(DeadlineStreamTest, DestroyingTheStreamWithAPendingReadAbortsIt) {
  stream_->expires_after(100ms);
  start_read();
  stream_.reset();  // the completion (and the timer's) must not touch freed memory (ASan build)
  run_until_read_done();
  ASSERT_TRUE(read_result_.has_value());
  EXPECT_EQ(*read_result_, asio::error::operation_aborted);
  io_.restart();
  io_.run_for(200ms);  // past the old deadline: the timer stays quiet
}

TEST_F(DeadlineStreamTest, AReleasedSocketHasNoDeadline) {
  stream_->expires_after(100ms);
  tcp::socket released = stream_->release_socket();
  std::optional<error_code> result;
  released.async_read_some(asio::buffer(read_buffer_),
                           [&](error_code ec, std::size_t) { result = ec; });
  peer_sends_after(300ms);
  run_until([&] { return result.has_value(); });
  ASSERT_TRUE(result.has_value());
  EXPECT_FALSE(*result) << result->message();
}

}  // namespace
}  // namespace hipache::net
