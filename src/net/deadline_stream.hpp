// A TCP socket whose reads, writes and connects fail with beast::error::timeout once a deadline
// passes: the part of beast::tcp_stream this proxy uses, at a fraction of its cost per operation.
//
// beast::tcp_stream arms and cancels a timer around every read and write, reading the clock each
// time (a tenth of a worker's user time on small requests). A session moves its deadline forward
// about ten times per request, and almost no deadline is ever reached. Here expires_after() only
// records the time (from the coarse clock, which costs no system call or TSC read) and one timer
// per connection stays armed: when it fires early because the deadline has moved on, it is armed
// again for the new time, which happens once per timeout period rather than once per operation.
// When it fires with the deadline passed and an operation pending, the socket is closed (as
// beast::tcp_stream does) and the operation completes with beast::error::timeout. A deadline that
// passes while nothing is pending fails the next operation at once, unless a new deadline is set
// first (every caller sets one before each operation).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/associator.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/error.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <utility>

namespace hipache::net {

namespace detail {

using Clock = std::chrono::steady_clock;

// CLOCK_MONOTONIC (steady_clock's) as of the last scheduler tick: at most a few milliseconds
// behind, which no timeout of this proxy can tell.
Clock::time_point coarse_now();

struct DeadlineState {
  explicit DeadlineState(boost::asio::ip::tcp::socket s)
      : socket(std::move(s)), timer(socket.get_executor()) {}

  boost::asio::ip::tcp::socket socket;
  boost::asio::steady_timer timer;
  Clock::time_point deadline = Clock::time_point::max();
  bool armed = false;       // the timer waits, for a time no later than `deadline`
  unsigned generation = 0;  // of the timer's current wait: an older completion is stale
  unsigned pending = 0;     // operations in progress
  bool timed_out = false;   // the deadline passed: the socket is closed
};

// Wraps an operation's completion handler: the operation is no longer pending, and an error after
// the deadline passed is reported as the timeout. The handler's executor, allocator and
// cancellation slot stay the operation's (the associator below).
template <class Handler>
struct TimedCompletion {
  std::shared_ptr<DeadlineState> state;  // outlives the stream if need be, like the socket's op
  Handler handler;

  template <class... Results>
  void operator()(boost::system::error_code ec, Results&&... results) {
    --state->pending;
    if (ec && state->timed_out) ec = boost::beast::error::timeout;
    std::move(handler)(ec, std::forward<Results>(results)...);
  }
};

}  // namespace detail

class DeadlineStream {
 public:
  using executor_type = boost::asio::any_io_executor;
  using socket_type = boost::asio::ip::tcp::socket;
  using lowest_layer_type = socket_type;  // for boost::asio::ssl::stream
  using Clock = detail::Clock;

  explicit DeadlineStream(const executor_type& executor);
  explicit DeadlineStream(socket_type socket);
  ~DeadlineStream();
  DeadlineStream(DeadlineStream&&) noexcept = default;
  DeadlineStream& operator=(DeadlineStream&&) = delete;
  DeadlineStream(const DeadlineStream&) = delete;
  DeadlineStream& operator=(const DeadlineStream&) = delete;

  executor_type get_executor() { return state_->socket.get_executor(); }
  socket_type& socket() { return state_->socket; }
  lowest_layer_type& lowest_layer() { return state_->socket; }
  const lowest_layer_type& lowest_layer() const { return state_->socket; }

  // Operations from now on fail with beast::error::timeout after `timeout` (from now).
  void expires_after(Clock::duration timeout);
  void expires_never();
  void cancel();  // pending operations complete with operation_aborted
  void close();
  // The socket, without a deadline; this stream is left without one.
  socket_type release_socket();

  template <class Buffers, class Token>
  auto async_read_some(const Buffers& buffers, Token&& token) {
    return transfer(buffers, std::forward<Token>(token),
                    [](socket_type& s, const Buffers& b, auto completion) {
                      s.async_read_some(b, std::move(completion));
                    });
  }

  template <class Buffers, class Token>
  auto async_write_some(const Buffers& buffers, Token&& token) {
    return transfer(buffers, std::forward<Token>(token),
                    [](socket_type& s, const Buffers& b, auto completion) {
                      s.async_write_some(b, std::move(completion));
                    });
  }

  // Connects to the first of `endpoints` that accepts.
  template <class Endpoints, class Token>
  auto async_connect(const Endpoints& endpoints, Token&& token) {
    using Endpoint = typename socket_type::endpoint_type;
    return boost::asio::async_initiate<Token, void(boost::system::error_code, Endpoint)>(
        [this](auto handler, const Endpoints& e) {
          if (auto completion = begin(std::move(handler), Endpoint{})) {
            boost::asio::async_connect(state_->socket, e, std::move(*completion));
          }
        },
        token, endpoints);
  }

 private:
  // A read or write of some bytes: `start` hands the socket operation its wrapped handler.
  template <class Buffers, class Token, class Start>
  auto transfer(const Buffers& buffers, Token&& token, Start start) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this, start](auto handler, const Buffers& b) {
          if (auto completion = begin(std::move(handler), std::size_t{0})) {
            start(state_->socket, b, std::move(*completion));
          }
        },
        token, buffers);
  }

  // Starts an operation: its wrapped handler, or none when the deadline has passed already (the
  // handler is then completed with the timeout, as the operation would have been).
  template <class Handler, class Result>
  std::optional<detail::TimedCompletion<Handler>> begin(Handler handler, Result empty) {
    if (state_->timed_out) {
      const auto executor = boost::asio::get_associated_executor(handler, get_executor());
      boost::asio::post(executor,
                        boost::asio::append(std::move(handler),
                                            boost::system::error_code(boost::beast::error::timeout),
                                            std::move(empty)));
      return std::nullopt;
    }
    if (!state_->armed && state_->deadline != Clock::time_point::max()) arm(state_);
    ++state_->pending;
    return detail::TimedCompletion<Handler>{state_, std::move(handler)};
  }

  static void arm(const std::shared_ptr<detail::DeadlineState>& state);
  static void on_timer(const std::shared_ptr<detail::DeadlineState>& state);

  std::shared_ptr<detail::DeadlineState> state_;
};

}  // namespace hipache::net

template <template <typename, typename> class Associator, typename Handler,
          typename DefaultCandidate>
struct boost::asio::associator<Associator, hipache::net::detail::TimedCompletion<Handler>,
                               DefaultCandidate> : Associator<Handler, DefaultCandidate> {
  static typename Associator<Handler, DefaultCandidate>::type get(
      const hipache::net::detail::TimedCompletion<Handler>& completion,
      const DefaultCandidate& candidate = DefaultCandidate()) noexcept {
    return Associator<Handler, DefaultCandidate>::get(completion.handler, candidate);
  }
};
