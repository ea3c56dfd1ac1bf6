#include "health/checker_process.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>

#include "health/active_checker.hpp"
#include "health/check_lock.hpp"

namespace hipache::health {

namespace {
namespace asio = boost::asio;
using namespace std::chrono_literals;
// Letting the locks go takes one Redis round trip; a Redis that does not answer cannot hold
// the stop longer than this.
constexpr auto kStopGrace = 3s;
}  // namespace

int run_checker(const Config& config) {
  asio::io_context io(1);
  std::array<char, 256> hostname{};
  if (::gethostname(hostname.data(), hostname.size() - 1) != 0) hostname = {'?'};
  auto checker = std::make_shared<ActiveChecker>(io.get_executor(), config,
                                                 lock_owner(hostname.data(), ::getpid()));
  checker->start();

  asio::steady_timer stop_deadline(io);
  asio::signal_set stop_signals(io, SIGTERM, SIGINT);
  stop_signals.async_wait([&](const boost::system::error_code& ec, int signal) {
    if (ec) return;
    spdlog::info("health checker {}: {}, stopping", ::getpid(),
                 signal == SIGINT ? "SIGINT" : "SIGTERM");
    stop_deadline.expires_after(kStopGrace);
    stop_deadline.async_wait([&](const boost::system::error_code&) { io.stop(); });
    asio::co_spawn(io, checker->stop(), [&](std::exception_ptr) { io.stop(); });
  });
  // The master sends SIGUSR1 (reopen logs) and SIGUSR2 to its children; neither concerns this one.
  asio::signal_set ignored(io, SIGUSR1, SIGUSR2);
  std::function<void(const boost::system::error_code&, int)> ignore =
      [&](const boost::system::error_code& ec, int) {
        if (!ec) ignored.async_wait(ignore);
      };
  ignored.async_wait(ignore);
  sigset_t handled;
  sigemptyset(&handled);
  for (const int sig : {SIGTERM, SIGINT, SIGUSR1, SIGUSR2}) sigaddset(&handled, sig);
  sigprocmask(SIG_UNBLOCK, &handled, nullptr);

  io.run();
  spdlog::default_logger()->flush();
  // As in a worker: coroutines still suspended refer to the checker; the kernel closes sockets.
  ::_exit(0);
}

}  // namespace hipache::health
