// Idle keep-alive plain-HTTP connections, parked outside any coroutine.
//
// Between two requests a connection needs nothing but its socket, a readiness wait and its
// place in the idle-timeout order. A suspended session would also hold its coroutine frames, its
// stream state and a timer: about 5 KB per idle connection against about 0.5 KB parked
// (bench/README.md, idle keep-alive row). When the client sends its next request, a new session
// starts from the socket and the facts kept here.
//
// Every parked connection has the same idle timeout (tcpTimeout), so they expire in the order
// they were parked: one timer, armed for the oldest, serves them all. TLS connections are not
// parked: their state lives in the TLS stream, which is most of their memory anyway.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <list>
#include <string>

namespace hipache::proxy {

struct ProxyContext;

// What a session knows of its connection that must outlive a park.
struct ClientFacts {
  std::string remote;      // client address as logged; empty: not known yet
  std::string local_port;  // for X-Forwarded-Port
};

class IdleConnections {
 public:
  // timeout: tcpTimeout; zero keeps idle connections open until the client closes them.
  IdleConnections(boost::asio::any_io_executor executor, std::chrono::seconds timeout);
  ~IdleConnections();  // here Parked is incomplete
  IdleConnections(const IdleConnections&) = delete;
  IdleConnections& operator=(const IdleConnections&) = delete;

  // Keeps `socket` until the client sends something (a new session then serves it), closes it,
  // is idle for the timeout, or the worker drains (ctx.sessions holds parked connections too).
  void park(boost::asio::ip::tcp::socket socket, ClientFacts facts, ProxyContext& ctx);

  std::size_t size() const { return parked_.size(); }

 private:
  struct Parked;
  using Clock = std::chrono::steady_clock;

  void arm_sweep();
  void sweep();

  boost::asio::any_io_executor executor_;
  std::chrono::seconds timeout_;
  std::list<Parked> parked_;  // oldest first
  boost::asio::steady_timer sweep_timer_;
  bool sweep_armed_ = false;
};

}  // namespace hipache::proxy
