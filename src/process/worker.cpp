#include "process/worker.hpp"

#include <malloc.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <optional>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "process/cpu_spread.hpp"
#include "proxy/proxy_context.hpp"
#include "store/redis_route_store.hpp"

namespace hipache::process {

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
constexpr auto kAccessLogFlushInterval = 100ms;
constexpr auto kDrainPollInterval = 50ms;
constexpr auto kHeapTrimInterval = 1s;
constexpr std::size_t kHeapTrimThreshold = 1024 * 1024;

// Takes one pending connection without waiting (the listening socket is non-blocking): the
// socket, or an error, would_block when there is none (another worker took it). Not Asio's
// synchronous accept: after ECONNABORTED that one polls, blocking, for the next connection.
asio::ip::tcp::socket accept_pending(asio::ip::tcp::acceptor& acceptor,
                                     const asio::ip::tcp& protocol, boost::system::error_code& ec) {
  asio::ip::tcp::socket socket(acceptor.get_executor());
  for (;;) {
    const int fd =
        ::accept4(acceptor.native_handle(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      socket.assign(protocol, fd, ec);
      if (ec) ::close(fd);
      return socket;
    }
    // Gone before it was accepted, or interrupted: the next one, if any.
    if (errno == ECONNABORTED || errno == EPROTO || errno == EINTR) continue;
    ec.assign(errno == EAGAIN ? EWOULDBLOCK : errno, boost::system::system_category());
    return socket;
  }
}

// Waits for a pending connection, then takes it unless another worker should (AcceptTurn);
// takes the ones queued behind it while this worker stays within its share.
asio::awaitable<void> accept_loop(asio::ip::tcp::acceptor& acceptor, asio::ip::tcp protocol,
                                  proxy::ProxyContext& ctx, net::ssl::context* tls,
                                  AcceptTurn& turn) {
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer pause(executor);
  // Sessions register themselves when they start, after the accept loop has moved on.
  std::int64_t not_started = 0;
  const auto connections = [&] {
    return static_cast<std::int64_t>(ctx.open_connections()) + not_started;
  };
  boost::system::error_code ec;
  while (acceptor.is_open()) {
    not_started = 0;
    std::tie(ec) = co_await acceptor.async_wait(asio::ip::tcp::acceptor::wait_read, kUseTuple);
    if (!ec) {
      const auto yield = turn.before_accept(connections());
      if (yield.count() > 0) {
        pause.expires_after(yield);
        co_await pause.async_wait(kUseTuple);
      }
      for (bool more = true; more && acceptor.is_open();) {
        auto socket = accept_pending(acceptor, protocol, ec);
        if (ec) break;
        const auto limit = ctx.config.server.max_connections;
        if (limit > 0 && ctx.open_connections() >= limit) {
          // A clear 503 rather than collapse; other workers may still have room.
          asio::co_spawn(executor, proxy::refuse_client(std::move(socket), ctx, tls != nullptr),
                         proxy::log_connection_exception);
        } else {
          // Accepted just before a drain closed the acceptor still gets served.
          asio::co_spawn(executor, proxy::serve_client(std::move(socket), ctx, tls),
                         proxy::log_connection_exception);
          ++not_started;
        }
        more = turn.may_accept_more(connections());
      }
      // All pending ones taken (by this worker or another), or enough for this worker's share.
      if (!ec || ec == asio::error::would_block) continue;
    }
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    spdlog::error("accept failed: {}", ec.message());  // out of descriptors, memory, ...
    pause.expires_after(50ms);
    co_await pause.async_wait(kUseTuple);
  }
}

// The count the other workers compare against changes as connections close too, and the report
// is the worker's sign of life (WorkerLoads::kStaleReport).
asio::awaitable<void> report_load_loop(AcceptTurn& turn, const proxy::ProxyContext& ctx) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    timer.expires_after(WorkerLoads::kReportInterval);
    auto [ec] = co_await timer.async_wait(kUseTuple);
    if (ec || ctx.draining) co_return;
    turn.publish(static_cast<std::int64_t>(ctx.open_connections()));
  }
}

// Looks often while the worker is busy, rarely while it is not (CpuSpread::look).
asio::awaitable<void> cpu_spread_loop(CpuSpread& spread) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    timer.expires_after(spread.look());
    auto [ec] = co_await timer.async_wait(kUseTuple);
    if (ec) co_return;
  }
}

asio::awaitable<void> flush_loop(log::AccessLog& access_log) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    timer.expires_after(kAccessLogFlushInterval);
    auto [ec] = co_await timer.async_wait(kUseTuple);
    if (ec) co_return;
    access_log.flush();
  }
}

// After a burst (thousands of connections served at once, then parked or closed) the memory
// their sessions used lies free inside glibc's heap, between blocks still in use, and stays in
// the worker's RSS until reused. Once a second, when over a megabyte lies free, the whole free
// pages go back to the kernel (bench: idle keep-alive row). Relay buffers the last second did
// not need are freed first.
asio::awaitable<void> heap_trim_loop(proxy::ProxyContext& ctx) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    timer.expires_after(kHeapTrimInterval);
    auto [ec] = co_await timer.async_wait(kUseTuple);
    if (ec) co_return;
    ctx.chunks.release_unused();
    ctx.tunnel_chunks.release_unused();
    if (::mallinfo2().fordblks > kHeapTrimThreshold) ::malloc_trim(0);
  }
}

}  // namespace

int run_worker(const Config& config, const std::vector<net::BoundListener>& listeners,
               const net::ServerTls& tls, int ready_fd, AcceptTurn turn) {
  // One thread per worker: the reactor's I/O locking is dead weight. (Scheduler locking stays:
  // the resolver's helper thread posts completions back.)
  asio::io_context io(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO);
  store::RedisRouteStore store(io.get_executor(), config);
  proxy::UpstreamPool pool(
      io.get_executor(), config.server.max_sockets, config.server.http_keep_alive,
      std::chrono::seconds(config.server.tcp_timeout_s), config.server.backend_tls_verify);
  const proxy::ErrorPages error_pages(config.server.static_dir);
  log::AccessLog access_log(config.server.access_log.value_or(""));
  proxy::IdleConnections idle(io.get_executor(), std::chrono::seconds(config.server.tcp_timeout_s));
  proxy::ProxyContext ctx{config, store.routes(), store.health(), pool, error_pages, access_log,
                          idle};

  std::vector<asio::ip::tcp::acceptor> acceptors;
  std::vector<net::ssl::context*> acceptor_tls;
  std::vector<asio::ip::tcp> protocols;
  for (std::size_t i = 0; i < listeners.size(); ++i) {
    const auto& listener = listeners[i];
    const auto protocol = listener.address.address.find(':') != std::string::npos
                              ? asio::ip::tcp::v6()
                              : asio::ip::tcp::v4();
    // The worker owns its inherited copy of the descriptor: closing the acceptor on SIGTERM
    // must leave this process holding no listening socket, so new clients go elsewhere.
    acceptors.emplace_back(io, protocol, listener.fd);
    acceptors.back().non_blocking(true);  // accept_pending() must never wait
    protocols.push_back(protocol);
    acceptor_tls.push_back(i < tls.per_listener.size() ? tls.per_listener[i].get() : nullptr);
  }
  for (std::size_t i = 0; i < acceptors.size(); ++i) {
    asio::co_spawn(io, accept_loop(acceptors[i], protocols[i], ctx, acceptor_tls[i], turn),
                   asio::detached);
  }
  asio::co_spawn(io, report_load_loop(turn, ctx), asio::detached);
  const bool floating = !config.server.cpu_affinity;
  std::optional<CpuSpread> spread =
      config.server.cpu_spread && floating ? turn.cpu_spread() : std::nullopt;
  if (spread) asio::co_spawn(io, cpu_spread_loop(*spread), asio::detached);
  asio::co_spawn(io, flush_loop(access_log), asio::detached);
  asio::co_spawn(io, heap_trim_loop(ctx), asio::detached);

  // Stopping: SIGTERM drains, SIGINT (or SIGTERM again) stops at once.
  const auto stop_now = [&] {
    store.stop();
    io.stop();
  };
  asio::steady_timer drain_timer(io);
  const auto drain_deadline_after = std::chrono::seconds(config.server.graceful_wait_s);
  std::function<void()> wait_for_drain = [&] {
    if (ctx.open_connections() == 0 ||
        drain_timer.expiry() <= asio::steady_timer::clock_type::now()) {
      if (ctx.open_connections() > 0) {
        spdlog::warn("gracefulWait over: closing {} connection(s)", ctx.open_connections());
      }
      stop_now();
      return;
    }
    // Polled rather than signalled: a drain lasts seconds, and sessions need no extra hook.
    asio::post(io, [&] {
      auto poll = std::make_shared<asio::steady_timer>(io, kDrainPollInterval);
      poll->async_wait([&, poll](const boost::system::error_code&) { wait_for_drain(); });
    });
  };
  asio::signal_set stop_signals(io, SIGTERM, SIGINT);
  std::function<void(const boost::system::error_code&, int)> on_stop =
      [&](const boost::system::error_code& ec, int signal) {
        if (ec) return;
        if (signal == SIGINT || ctx.draining) {
          spdlog::info("worker {}: {}, stopping now", ::getpid(),
                       signal == SIGINT ? "SIGINT" : "second SIGTERM");
          stop_now();
          return;
        }
        spdlog::info("worker {}: SIGTERM, draining {} connection(s) (at most {} s)", ::getpid(),
                     ctx.open_connections(), config.server.graceful_wait_s);
        for (auto& acceptor : acceptors) acceptor.close();
        turn.stop_accepting();
        proxy::begin_drain(ctx);
        drain_timer.expires_after(drain_deadline_after);
        wait_for_drain();
        stop_signals.async_wait(on_stop);
      };
  stop_signals.async_wait(on_stop);
  asio::signal_set reopen_signal(io, SIGUSR1);
  std::function<void(const boost::system::error_code&, int)> on_reopen =
      [&](const boost::system::error_code& ec, int) {
        if (ec) return;
        access_log.reopen();
        reopen_signal.async_wait(on_reopen);
      };
  reopen_signal.async_wait(on_reopen);

  if (ready_fd >= 0) {
    const char ready = 'R';
    if (::write(ready_fd, &ready, 1) != 1) spdlog::warn("cannot report readiness to the master");
  }
  // The master keeps these blocked across fork until the handlers above exist (a SIGUSR1 from
  // logrotate during start-up must not kill the worker).
  sigset_t handled;
  sigemptyset(&handled);
  for (const int sig : {SIGTERM, SIGINT, SIGUSR1}) sigaddset(&handled, sig);
  sigprocmask(SIG_UNBLOCK, &handled, nullptr);

  spdlog::info("worker {} serving {} listener(s)", ::getpid(), acceptors.size());
  io.run();
  access_log.flush();
  spdlog::default_logger()->flush();
  // Connections still open (a fast stop) are suspended coroutines that refer to ctx, the store
  // and the pool; tearing those down in destructor order would free them under the coroutines.
  // The process ends here instead: the kernel closes every socket.
  ::_exit(0);
}

}  // namespace hipache::process
