// The connection handover's messages (proxy/handover.hpp): each descriptor arrives with its count
// of requests and its PROXY client address, several per message too, and a message in the
// format of a build before the addresses (counts only) still arrives, without addresses.
#include "proxy/handover.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstring>
#include <optional>
#include <vector>

namespace hipache::proxy {
namespace {

namespace asio = boost::asio;

struct Received {
  int fd;
  std::uint64_t requests;
  std::optional<net::ProxiedAddress> proxied;
};

net::ProxiedAddress address(std::uint8_t last) {
  net::ProxiedAddress out;
  out.bytes[0] = 0x20;
  out.bytes[1] = 0x01;
  out.bytes[15] = last;
  return out;
}

int null_fd() {
  const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0);
  return fd;
}

class HandoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ends_ = HandoverSocket::create();
    handover_.emplace(io_.get_executor(), ends_);
    handover_->start_receiving(
        [this](int fd, std::uint64_t requests, const std::optional<net::ProxiedAddress>& proxied) {
          received_.push_back({fd, requests, proxied});
        });
  }
  void TearDown() override {
    for (const auto& r : received_) ::close(r.fd);
    handover_.reset();
    ::close(ends_.send_fd);
    ::close(ends_.receive_fd);
  }
  void receive(std::size_t count) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (received_.size() < count && std::chrono::steady_clock::now() < until) {
      io_.run_for(std::chrono::milliseconds(10));
    }
    ASSERT_EQ(received_.size(), count);
  }
  // Sends `fds` with `data` as the message's bytes, as another build might.
  void send_raw(const std::vector<int>& fds, const std::vector<std::uint8_t>& data) {
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * 4)> control{};
    iovec part{const_cast<std::uint8_t*>(data.data()), data.size()};
    msghdr message{};
    message.msg_iov = &part;
    message.msg_iovlen = 1;
    message.msg_control = control.data();
    message.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    auto* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(header), fds.data(), sizeof(int) * fds.size());
    ASSERT_GT(::sendmsg(ends_.send_fd, &message, 0), 0);
    for (const int fd : fds) ::close(fd);
  }

  asio::io_context io_;
  HandoverSocket ends_;
  std::optional<ConnectionHandover> handover_;
  std::vector<Received> received_;
};

TEST_F(HandoverTest, AddressesTravelWithTheirConnections) {
  handover_->send(null_fd(), 3, address(7));
  handover_->send(null_fd(), 1, std::nullopt);
  handover_->send(null_fd(), 9, address(9));
  receive(3);
  EXPECT_EQ(received_[0].requests, 3U);
  EXPECT_EQ(received_[0].proxied, address(7));
  EXPECT_EQ(received_[1].requests, 1U);
  EXPECT_EQ(received_[1].proxied, std::nullopt);
  EXPECT_EQ(received_[2].requests, 9U);
  EXPECT_EQ(received_[2].proxied, address(9));
  for (const auto& r : received_) EXPECT_GE(::fcntl(r.fd, F_GETFD), 0);
}

// n counts, then n records of {present, 16 bytes}: two connections in one message.
TEST_F(HandoverTest, SeveralConnectionsInOneMessage) {
  std::vector<std::uint8_t> data(2 * sizeof(std::uint64_t) + 2 * 17, 0);
  const std::uint64_t counts[2] = {5, 6};
  std::memcpy(data.data(), counts, sizeof counts);
  data[16] = 0;  // the first: no address
  data[16 + 17] = 1;
  const auto second = address(42);
  std::memcpy(data.data() + 16 + 17 + 1, second.bytes.data(), 16);
  send_raw({null_fd(), null_fd()}, data);
  receive(2);
  EXPECT_EQ(received_[0].requests, 5U);
  EXPECT_EQ(received_[0].proxied, std::nullopt);
  EXPECT_EQ(received_[1].requests, 6U);
  EXPECT_EQ(received_[1].proxied, address(42));
}

// A build before the addresses sends the counts alone (an upgrade's old workers do).
TEST_F(HandoverTest, CountsOnlyFromAnOlderBuild) {
  std::vector<std::uint8_t> data(2 * sizeof(std::uint64_t));
  const std::uint64_t counts[2] = {4, 2};
  std::memcpy(data.data(), counts, sizeof counts);
  send_raw({null_fd(), null_fd()}, data);
  receive(2);
  EXPECT_EQ(received_[0].requests, 4U);
  EXPECT_EQ(received_[1].requests, 2U);
  EXPECT_EQ(received_[0].proxied, std::nullopt);
  EXPECT_EQ(received_[1].proxied, std::nullopt);
}

}  // namespace
}  // namespace hipache::proxy
