#include "process/worker.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <memory>
#include <optional>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "metrics/admin.hpp"
#include "metrics/record.hpp"
#include "net/accept_loop.hpp"
#include "process/cpu_spread.hpp"
#include "process/exit_child.hpp"
#include "process/heap.hpp"
#include "process/worker_process.hpp"
#include "proxy/handover.hpp"
#include "proxy/proxied_client.hpp"
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
constexpr auto kMetricsInterval = 1s;

// One listener's accepts in this worker: AcceptTurn decides who takes a pending connection,
// and each accepted one is served, or refused with a 503 at server.maxConnections.
class WorkerAccepts final : public net::AcceptHandler {
 public:
  WorkerAccepts(proxy::ProxyContext& ctx, net::ssl::context* tls, bool proxy_protocol,
                AcceptTurn& turn)
      : ctx_(ctx), tls_(tls), proxy_protocol_(proxy_protocol), turn_(turn) {}

  std::chrono::microseconds before_accept() override {
    // Sessions register themselves when they start: those accepted before have by now.
    not_started_ = 0;
    return turn_.before_accept(connections());
  }

  void accepted(asio::ip::tcp::socket socket) override {
    metrics::add(metrics::Counter::connections_accepted);
    const auto executor = socket.get_executor();
    const auto limit = ctx_.config.server.max_connections;
    if (limit > 0 && ctx_.open_connections() >= limit) {
      // A clear 503 rather than collapse; other workers may still have room.
      asio::co_spawn(executor, proxy::refuse_client(std::move(socket), ctx_, tls_ != nullptr),
                     proxy::log_connection_exception);
      return;
    }
    // Accepted just before a drain closed the acceptor still gets served.
    asio::co_spawn(executor,
                   proxy_protocol_ ? proxy::serve_proxied_client(std::move(socket), ctx_, tls_)
                                   : proxy::serve_client(std::move(socket), ctx_, tls_),
                   proxy::log_connection_exception);
    ++not_started_;
  }

  bool may_accept_more() override { return turn_.may_accept_more(connections()); }

 private:
  std::int64_t connections() const {
    return static_cast<std::int64_t>(ctx_.open_connections()) + not_started_;
  }

  proxy::ProxyContext& ctx_;
  net::ssl::context* tls_;
  bool proxy_protocol_;  // the listener's connections start with a PROXY header
  AcceptTurn& turn_;
  std::int64_t not_started_ = 0;  // accepted, not yet in ctx_.sessions
};

// A proxy listener's accept loop, owning its handler: the coroutine frame keeps it alive exactly
// as long as the loop, and reachable from the reactor when the worker ends in _exit (Memcheck).
asio::awaitable<void> accept_into_proxy(asio::ip::tcp::acceptor& acceptor, asio::ip::tcp protocol,
                                        WorkerAccepts accepts) {
  co_await net::accept_loop(acceptor, protocol, accepts);
}

// The admin listener's accepts: no balancing, no connection limit of the proxy's (metrics/admin).
class AdminAccepts final : public net::AcceptHandler {
 public:
  explicit AdminAccepts(metrics::AdminContext& ctx) : ctx_(ctx) {}
  std::chrono::microseconds before_accept() override { return {}; }
  void accepted(asio::ip::tcp::socket socket) override {
    const auto executor = socket.get_executor();
    asio::co_spawn(executor, metrics::serve_admin(std::move(socket), ctx_),
                   proxy::log_connection_exception);
  }
  bool may_accept_more() override { return true; }

 private:
  metrics::AdminContext& ctx_;
};

// The gauges the shared table shows, sampled (the counters count as things happen).
asio::awaitable<void> metrics_loop(const proxy::ProxyContext& ctx,
                                   const store::RedisRouteStore& store) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    metrics::set(metrics::Gauge::rss_bytes, static_cast<std::int64_t>(resident_bytes(::getpid())));
    metrics::set(metrics::Gauge::connections_open,
                 static_cast<std::int64_t>(ctx.open_connections()));
    metrics::set(metrics::Gauge::connections_parked, static_cast<std::int64_t>(ctx.idle.size()));
    ctx.pool.report_metrics();
    store.report_metrics();
    timer.expires_after(kMetricsInterval);
    auto [ec] = co_await timer.async_wait(kUseTuple);
    if (ec) co_return;
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
// their sessions used lies free inside the heap, between blocks still in use, and stays in the
// worker's RSS until reused. Once a second the free pages go back to the kernel
// (process/heap.hpp; bench: idle keep-alive row). Relay buffers the last second did not need are
// freed first.
asio::awaitable<void> heap_trim_loop(proxy::ProxyContext& ctx) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    timer.expires_after(kHeapTrimInterval);
    auto [ec] = co_await timer.async_wait(kUseTuple);
    if (ec) co_return;
    ctx.chunks.release_unused();
    ctx.tunnel_chunks.release_unused();
    release_free_heap();
  }
}

}  // namespace

int run_worker(const Config& config, const std::vector<net::BoundListener>& listeners,
               const net::ServerTls& tls, int ready_fd, AcceptTurn turn,
               proxy::HandoverSocket handover_socket, WorkerMetrics worker_metrics) {
  if (worker_metrics.slot != nullptr) worker_metrics.slot->pid.store(::getpid());
  metrics::attach(worker_metrics.slot, config.admin.frontend_metrics > 0);
  // One thread per worker: the reactor's I/O locking is dead weight. (Scheduler locking stays:
  // the resolver's helper thread posts completions back.)
  asio::io_context io(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO);
  store::RedisRouteStore store(io.get_executor(), config);
  proxy::UpstreamPool pool(
      io.get_executor(), config.server.max_sockets, config.server.http_keep_alive,
      std::chrono::seconds(config.server.tcp_timeout_s), config.server.backend_tls_verify);
  const proxy::ErrorPages error_pages(config.server.static_dir);
  log::AccessLog access_log(config.server.access_log.value_or(""), config.server.access_log_format);
  proxy::IdleConnections idle(io.get_executor(), std::chrono::seconds(config.server.tcp_timeout_s));
  proxy::ProxyContext ctx{config, store.routes(), store.health(), pool, error_pages, access_log,
                          idle};
  // Idle connections of replaced workers come here while this one serves.
  proxy::ConnectionHandover handover(io.get_executor(), handover_socket);
  handover.start_receiving(
      [&](int fd, std::uint64_t requests, const std::optional<net::ProxiedAddress>& proxied) {
        idle.adopt(fd, requests, proxied, ctx);
      });

  metrics::AdminContext admin{config, worker_metrics.table, store};
  AdminAccepts admin_accepts(admin);
  // Reserved: each accept loop holds a reference to its acceptor.
  std::vector<asio::ip::tcp::acceptor> acceptors;
  acceptors.reserve(listeners.size());
  for (std::size_t i = 0; i < listeners.size(); ++i) {
    const auto& listener = listeners[i];
    const auto protocol = listener.address.address.find(':') != std::string::npos
                              ? asio::ip::tcp::v6()
                              : asio::ip::tcp::v4();
    // The worker owns its inherited copy of the descriptor: closing the acceptor on SIGTERM
    // must leave this process holding no listening socket, so new clients go elsewhere.
    auto& acceptor = acceptors.emplace_back(io, protocol, listener.fd);
    acceptor.non_blocking(true);  // accept_pending() must never wait
    if (listener.address.admin) {
      asio::co_spawn(io, net::accept_loop(acceptor, protocol, admin_accepts), asio::detached);
      continue;
    }
    net::ssl::context* const listener_tls =
        i < tls.per_listener.size() ? tls.per_listener[i].get() : nullptr;
    WorkerAccepts accepts(ctx, listener_tls, listener.address.proxy_protocol, turn);
    asio::co_spawn(io, accept_into_proxy(acceptor, protocol, accepts), asio::detached);
  }
  asio::co_spawn(io, metrics_loop(ctx, store), asio::detached);
  asio::co_spawn(io, report_load_loop(turn, ctx), asio::detached);
  const bool floating = !config.server.cpu_affinity;
  std::optional<CpuSpread> spread =
      config.server.cpu_spread && floating ? turn.cpu_spread() : std::nullopt;
  if (spread) asio::co_spawn(io, cpu_spread_loop(*spread), asio::detached);
  asio::co_spawn(io, flush_loop(access_log), asio::detached);
  asio::co_spawn(io, heap_trim_loop(ctx), asio::detached);

  // Stopping: SIGTERM drains, SIGUSR2 drains handing idle connections over (the worker is being
  // replaced), SIGINT (or a second SIGTERM) stops at once.
  const auto stop_now = [&] {
    store.stop();
    io.stop();
  };
  asio::steady_timer drain_timer(io);
  const auto drain_deadline_after = std::chrono::seconds(config.server.graceful_wait_s);
  asio::steady_timer::time_point drain_started{};
  std::function<void()> wait_for_drain = [&] {
    if (asio::steady_timer::clock_type::now() >= drain_started + proxy::kIdleTlsGrace) {
      proxy::end_idle_tls_grace(ctx);
    }
    if ((ctx.open_connections() == 0 && handover.pending() == 0) ||
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
  stop_signals.add(SIGUSR2);
  std::function<void(const boost::system::error_code&, int)> on_stop =
      [&](const boost::system::error_code& ec, int signal) {
        if (ec) return;
        if (signal == SIGUSR2 && ctx.draining) {
          stop_signals.async_wait(on_stop);
          return;
        }
        if (signal == SIGINT || ctx.draining) {
          spdlog::info("worker {}: {}, stopping now", ::getpid(),
                       signal == SIGINT ? "SIGINT" : "second SIGTERM");
          stop_now();
          return;
        }
        const bool replaced = signal == SIGUSR2 && handover.valid();
        spdlog::info("worker {}: {}, draining {} connection(s) (at most {} s){}", ::getpid(),
                     signal == SIGUSR2 ? "replaced" : "SIGTERM", ctx.open_connections(),
                     config.server.graceful_wait_s,
                     replaced ? ", idle ones handed to the serving workers" : "");
        for (auto& acceptor : acceptors) acceptor.close();
        turn.stop_accepting();
        handover.stop_receiving();
        proxy::begin_drain(ctx, replaced ? &handover : nullptr);
        drain_timer.expires_after(drain_deadline_after);
        drain_started = asio::steady_timer::clock_type::now();
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
  for (const int sig : {SIGTERM, SIGINT, SIGUSR1, SIGUSR2}) sigaddset(&handled, sig);
  sigprocmask(SIG_UNBLOCK, &handled, nullptr);

  spdlog::info("worker {} serving {} listener(s)", ::getpid(), acceptors.size());
  io.run();
  spdlog::info("worker {} stopped serving {} listener(s)", ::getpid(), acceptors.size());
  access_log.flush();
  spdlog::default_logger()->flush();
  // Connections still open (a fast stop) are suspended coroutines that refer to ctx, the store
  // and the pool; tearing those down in destructor order would free them under the coroutines.
  // The process ends here instead: the kernel closes every socket.
  exit_child(0);
}

}  // namespace hipache::process
