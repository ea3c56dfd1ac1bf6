#include "proxy/handover.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <system_error>

namespace hipache::proxy {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

// Connections per message: well under the kernel's SCM_MAX_FD (253).
constexpr std::size_t kBatch = 64;

// A message's data, for n descriptors: n request counts (uint64), then n address records (a
// byte saying whether there is one, then the ProxiedAddress). A sender built before the records
// sends the counts alone; a receiver built before them reads the counts and drops the rest.
constexpr std::size_t kRecord = 1 + sizeof(net::ProxiedAddress);
using MessageData = std::array<std::uint8_t, kBatch*(sizeof(std::uint64_t) + kRecord)>;

// Writes entry i of a message of `fds` descriptors.
void write_entry(MessageData& data, std::size_t fds, std::size_t i, std::uint64_t requests,
                 const std::optional<net::ProxiedAddress>& proxied) {
  std::memcpy(data.data() + i * sizeof(std::uint64_t), &requests, sizeof requests);
  std::uint8_t* record = data.data() + fds * sizeof(std::uint64_t) + i * kRecord;
  record[0] = proxied ? 1 : 0;
  if (proxied) std::memcpy(record + 1, proxied->bytes.data(), proxied->bytes.size());
}

// Entry i of a received message of `got` bytes carrying `fds` descriptors.
std::pair<std::uint64_t, std::optional<net::ProxiedAddress>> read_entry(const MessageData& data,
                                                                        std::size_t got,
                                                                        std::size_t fds,
                                                                        std::size_t i) {
  std::uint64_t requests = 1;
  if ((i + 1) * sizeof(std::uint64_t) <= got) {
    std::memcpy(&requests, data.data() + i * sizeof(std::uint64_t), sizeof requests);
  }
  std::optional<net::ProxiedAddress> proxied;
  const std::size_t record = fds * sizeof(std::uint64_t) + i * kRecord;
  if (record + kRecord <= got && data[record] == 1) {
    proxied.emplace();
    std::memcpy(proxied->bytes.data(), data.data() + record + 1, proxied->bytes.size());
  }
  return {requests, proxied};
}

int duplicate(int fd) {
  if (fd < 0) return -1;
  const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) spdlog::warn("connection handover unavailable: {}", std::strerror(errno));
  return copy;
}

asio::posix::stream_descriptor open_end(const asio::any_io_executor& executor, int fd) {
  asio::posix::stream_descriptor end(executor);
  if (fd >= 0) end.assign(fd);
  return end;
}

}  // namespace

HandoverSocket HandoverSocket::create() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    throw std::system_error(errno, std::generic_category(), "connection handover socket");
  }
  return {fds[0], fds[1]};
}

ConnectionHandover::ConnectionHandover(const asio::any_io_executor& executor, HandoverSocket ends)
    : sender_(open_end(executor, ends.valid() ? duplicate(ends.send_fd) : -1)),
      receiver_(open_end(executor, ends.valid() ? duplicate(ends.receive_fd) : -1)) {}

void ConnectionHandover::start_receiving(Receiver receiver) {
  if (!receiver_.is_open()) return;
  on_receive_ = std::move(receiver);
  receiving_ = true;
  arm_receive();
}

void ConnectionHandover::stop_receiving() {
  receiving_ = false;
  error_code ignored;
  receiver_.cancel(ignored);
}

void ConnectionHandover::arm_receive() {
  if (receive_armed_ || !receiving_) return;
  receive_armed_ = true;
  receiver_.async_wait(asio::posix::stream_descriptor::wait_read, [this](const error_code& ec) {
    receive_armed_ = false;
    if (ec || !receiving_) return;
    receive_ready();
    arm_receive();
  });
}

void ConnectionHandover::receive_ready() {
  for (;;) {
    MessageData entries{};
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * kBatch)> control{};
    iovec data{entries.data(), entries.size()};
    msghdr message{};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    message.msg_control = control.data();
    message.msg_controllen = control.size();
    const auto got =
        ::recvmsg(receiver_.native_handle(), &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (got < 0) {
      // EAGAIN: another worker took it, or nothing is left. Anything else: try again later.
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        spdlog::warn("connection handover: {}", std::strerror(errno));
      }
      return;
    }
    if (got == 0) return;
    for (auto* header = CMSG_FIRSTHDR(&message); header != nullptr;
         header = CMSG_NXTHDR(&message, header)) {
      if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
      const auto fds = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < fds; ++i) {
        int fd = -1;
        std::memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof fd);
        const auto [requests, proxied] = read_entry(entries, static_cast<std::size_t>(got), fds, i);
        on_receive_(fd, requests, proxied);
      }
    }
    if ((message.msg_flags & MSG_CTRUNC) != 0) {
      spdlog::warn("connection handover: descriptors lost (message truncated)");
    }
  }
}

void ConnectionHandover::send(int fd, std::uint64_t requests,
                              const std::optional<net::ProxiedAddress>& proxied) {
  if (!sender_.is_open()) {
    ::close(fd);
    return;
  }
  queue_.push_back({fd, requests, proxied});
  flush();
}

void ConnectionHandover::flush() {
  while (!queue_.empty()) {
    const auto count = std::min(queue_.size(), kBatch);
    MessageData entries{};
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * kBatch)> control{};
    msghdr message{};
    iovec data{entries.data(), count * (sizeof(std::uint64_t) + kRecord)};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    message.msg_control = control.data();
    message.msg_controllen = CMSG_SPACE(sizeof(int) * count);
    auto* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int) * count);
    for (std::size_t i = 0; i < count; ++i) {
      write_entry(entries, count, i, queue_[i].requests, queue_[i].proxied);
      std::memcpy(CMSG_DATA(header) + i * sizeof(int), &queue_[i].fd, sizeof(int));
    }
    if (::sendmsg(sender_.native_handle(), &message, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ENOBUFS) {
        // Full: the serving workers are reading; go on when there is room.
        if (!write_wait_armed_) {
          write_wait_armed_ = true;
          sender_.async_wait(asio::posix::stream_descriptor::wait_write,
                             [this](const error_code& ec) {
                               write_wait_armed_ = false;
                               if (!ec) flush();
                             });
        }
        return;
      }
      spdlog::warn("connection handover failed ({}): closing {} idle connection(s)",
                   std::strerror(errno), count);
    }
    // Sent (the kernel holds references now) or failed: our copies close either way.
    for (std::size_t i = 0; i < count; ++i) ::close(queue_[i].fd);
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(count));
  }
}

}  // namespace hipache::proxy
