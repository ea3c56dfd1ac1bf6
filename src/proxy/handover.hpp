// Idle keep-alive connections of a worker being replaced go to a serving worker instead of being
// closed: a close would race the client's next request, which would then fail (issue #19;
// docs/operations.md, "Replacing workers without loss"). The master creates one Unix
// SOCK_SEQPACKET socket pair before forking and every worker inherits both ends (an in-place
// upgrade passes them to the new image too): a worker being replaced sends the descriptors of
// its idle connections on one end (SCM_RIGHTS), and every serving worker reads the other, so the
// kernel gives each message to exactly one of them. A connection in transit loses nothing:
// whatever its client sends meanwhile waits in the connection's own socket buffer. A connection
// whose client address came from a PROXY header travels with that address.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <utility>

#include "net/proxy_header.hpp"

namespace hipache::proxy {

// The two ends, as inherited; -1 when there is no pair (a single process, tests).
struct HandoverSocket {
  int send_fd = -1;
  int receive_fd = -1;

  // Both ends, non-blocking and close-on-exec. Throws std::system_error.
  static HandoverSocket create();
  bool valid() const { return send_fd >= 0 && receive_fd >= 0; }
};

class ConnectionHandover {
 public:
  // A received connection: its descriptor (now this process's), its count of requests and its
  // client's address from a PROXY header.
  using Receiver = std::function<void(int fd, std::uint64_t requests,
                                      const std::optional<net::ProxiedAddress>& proxied)>;

  // Duplicates the inherited ends, so that the worker's copies can be closed independently.
  ConnectionHandover(const boost::asio::any_io_executor& executor, HandoverSocket ends);

  bool valid() const { return sender_.is_open(); }

  // Serving: every connection another worker hands over goes to `receiver`, until stop.
  void start_receiving(Receiver receiver);
  void stop_receiving();

  // Being replaced: sends `fd` (closed here once sent, or if it cannot be) to a serving worker.
  void send(int fd, std::uint64_t requests,
            const std::optional<net::ProxiedAddress>& proxied = std::nullopt);
  // Connections queued because the socket was full: the worker waits for these before it ends.
  std::size_t pending() const { return queue_.size(); }

 private:
  void arm_receive();
  void receive_ready();
  void flush();

  boost::asio::posix::stream_descriptor sender_;
  boost::asio::posix::stream_descriptor receiver_;
  Receiver on_receive_;
  bool receive_armed_ = false;
  bool receiving_ = false;
  struct Outgoing {
    int fd;
    std::uint64_t requests;
    std::optional<net::ProxiedAddress> proxied;
  };
  std::deque<Outgoing> queue_;  // to send, oldest first
  bool write_wait_armed_ = false;
};

}  // namespace hipache::proxy
