// Idle keep-alive plain-HTTP connections, parked outside any coroutine.
//
// For its first moments of idleness (kWarmPeriod) a session of a connection that has carried
// several requests waits for the next one itself: a busy client's next request usually comes
// within milliseconds, and parking and reviving a session for each one cost a fifth of a
// worker's time under load (allocations, a readiness re-registration, a new session). A session
// still waiting after kWarmPeriod is parked.
//
// Between two requests a connection needs nothing but its descriptor, a readiness wait and its
// place in the idle-timeout order. A suspended session would also hold its coroutine frames, its
// stream state, a timer and its header memory: about 7 KB per idle connection. Even an Asio socket
// with a pending wait costs ~400 bytes (its reactor entry and the wait operation with its
// executors), so a parked connection leaves Asio altogether: its bare descriptor joins an epoll set
// of the parked ones, and that set is the one thing registered with the event loop
// (bench/README.md, idle keep-alive row). When the client sends its next request (or closes), a new
// session starts from the descriptor and the count of requests it has carried.
//
// Every parked connection has the same idle timeout (tcpTimeout), so they expire in the order
// they were parked: one timer, armed for the oldest, serves them all. TLS connections are not
// parked: their state lives in the TLS stream, which is most of their memory anyway.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/intrusive/list.hpp>
#include <chrono>
#include <cstdint>
#include <list>
#include <memory_resource>
#include <optional>

#include "net/proxy_header.hpp"

namespace hipache::proxy {

struct ProxyContext;
class ConnectionHandover;

class IdleConnections {
  using Clock = std::chrono::steady_clock;

 public:
  static constexpr std::chrono::milliseconds kWarmPeriod{200};

  // A session waiting for its client's next request (see the top of this file).
  class Waiter : public boost::intrusive::list_base_hook<
                     boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
   public:
    // kWarmPeriod has passed: end the wait (the session then parks its connection).
    virtual void stop_waiting() = 0;

   protected:
    ~Waiter() = default;

   private:
    friend class IdleConnections;
    Clock::time_point since_{};
  };

  // timeout: tcpTimeout; zero keeps idle connections open until the client closes them.
  // Throws std::system_error when the kernel refuses an epoll set (out of descriptors).
  IdleConnections(boost::asio::any_io_executor executor, std::chrono::seconds timeout);
  ~IdleConnections();  // here Parked is incomplete
  IdleConnections(const IdleConnections&) = delete;
  IdleConnections& operator=(const IdleConnections&) = delete;

  // Keeps `socket` until the client sends something (a new session then serves it), closes it,
  // is idle for the timeout, or the worker drains (close_all). The idle timeout counts from
  // here (for a session that waited warm: kWarmPeriod after its last response). `ctx` is the
  // worker's, the same on every call.
  // `requests`: served on this connection so far. `proxied`: its client's address from a PROXY
  // header, kept for the session that serves it next (the socket's peer is the balancer).
  // While handing over (a replaced worker), the connection goes to a serving worker instead.
  void park(boost::asio::ip::tcp::socket socket, std::uint64_t requests, ProxyContext& ctx,
            const std::optional<net::ProxiedAddress>& proxied = std::nullopt);
  // Parks a connection another worker handed over (proxy/handover.hpp); `fd` is ours now.
  void adopt(int fd, std::uint64_t requests, const std::optional<net::ProxiedAddress>& proxied,
             ProxyContext& ctx);

  // Closes every parked connection (the worker stops).
  void close_all();
  // The worker is being replaced: every parked connection, and every one parked from now on,
  // goes to `handover` (a serving worker) instead of being closed.
  void hand_over_to(ConnectionHandover& handover);
  bool handing_over() const { return handover_ != nullptr; }

  // `waiter` starts waiting; after kWarmPeriod its stop_waiting() is called unless
  // end_wait(waiter) (or its destruction) came first.
  void begin_wait(Waiter& waiter);
  static void end_wait(Waiter& waiter) { waiter.unlink(); }

  std::size_t size() const;  // parked connections

 private:
  struct Parked;

  void keep(int fd, boost::asio::ip::tcp protocol, std::uint64_t requests,
            const std::optional<net::ProxiedAddress>& proxied);
  void arm_readiness_wait();
  void revive_ready();
  void revive(Parked& parked);
  void arm_sweep();
  void sweep();
  void arm_warm_timer();
  void end_warm_periods();

  boost::asio::any_io_executor executor_;
  std::chrono::seconds timeout_;
  ProxyContext* ctx_ = nullptr;             // the worker's, known from the first park
  ConnectionHandover* handover_ = nullptr;  // set once the worker is being replaced
  // The epoll set of the parked descriptors, readable when one of them is.
  boost::asio::posix::stream_descriptor ready_set_;
  bool readiness_wait_armed_ = false;
  // Parked connections (64 bytes each) live in blocks of their own: scattered among the freed
  // sessions that parked them, they would pin that memory for as long as they stay idle. The
  // pool keeps its blocks for reuse: at most 64 bytes per connection of the most ever parked.
  std::pmr::unsynchronized_pool_resource parked_memory_;
  std::pmr::list<Parked> parked_;  // oldest first; closed before ready_set_
  boost::asio::steady_timer sweep_timer_;
  bool sweep_armed_ = false;
  // Sessions waiting in their warm period, oldest first; one timer for the oldest.
  boost::intrusive::list<Waiter, boost::intrusive::constant_time_size<false>> waiters_;
  boost::asio::steady_timer warm_timer_;
  bool warm_timer_armed_ = false;
};

}  // namespace hipache::proxy
