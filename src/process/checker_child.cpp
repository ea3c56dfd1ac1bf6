#include "process/checker_child.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "health/checker_process.hpp"
#include "process/worker_process.hpp"

namespace hipache::process {

namespace {
using namespace std::chrono_literals;
constexpr auto kQuickDeath = 2s;  // dying sooner than this after its start doubles the delay
constexpr auto kFirstDelay = 100ms;
constexpr auto kMaxDelay = 10s;
constexpr auto kStopGrace = 10s;  // the checker gives itself 3 s to let its locks go
}  // namespace

void run_checker_process(const Config& config, const sigset_t& original_mask,
                         std::vector<net::BoundListener>& listeners,
                         std::initializer_list<int> close_fds) {
  sigset_t mask = original_mask;
  for (const int sig : {SIGTERM, SIGINT, SIGUSR1, SIGUSR2}) sigaddset(&mask, sig);
  sigprocmask(SIG_SETMASK, &mask, nullptr);
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  // It serves no client: it must hold no listening socket (a stopped master's port would keep
  // queueing connections for nobody) and none of the master's other descriptors.
  net::close_listeners(listeners);
  for (const int fd : close_fds) {
    if (fd >= 0) ::close(fd);
  }
  int code = 1;
  try {
    code = health::run_checker(config);
  } catch (const std::exception& error) {
    spdlog::critical("health checker {} failed: {}", ::getpid(), error.what());
  }
  spdlog::default_logger()->flush();
  ::_exit(code);
}

void CheckerChild::keep_running(bool wanted, Clock::time_point now,
                                const std::function<void()>& child) {
  if (!wanted || pid_ || now < next_start_ || !restart_) return;
  const pid_t pid = ::fork();
  if (pid < 0) {
    spdlog::error("cannot start the health checker: fork failed: {}", std::strerror(errno));
    next_start_ = now + delay_;
    return;
  }
  if (pid == 0) {
    child();
    ::_exit(1);  // child() does not return; never run the master's code in the child
  }
  pid_ = pid;
  started_ = now;
  stopping_ = false;
  kill_at_ = Clock::time_point::max();
  spdlog::info("health checker {} started", pid);
}

CheckerChild::Clock::time_point CheckerChild::next_start(bool wanted) const {
  return wanted && !pid_ && restart_ ? next_start_ : Clock::time_point::max();
}

bool CheckerChild::reaped(pid_t pid, int status) {
  if (!pid_ || *pid_ != pid) return false;
  pid_.reset();
  const auto now = Clock::now();
  if (stopping_) {
    spdlog::info("health checker {} {}", pid, describe_exit(status));
    delay_ = kFirstDelay;
    next_start_ = now;
    return true;
  }
  spdlog::error("health checker {} {}; restarting it", pid, describe_exit(status));
  if (now - started_ < kQuickDeath) {
    next_start_ = now + delay_;
    delay_ = std::min<std::chrono::milliseconds>(delay_ * 2, kMaxDelay);
  } else {
    delay_ = kFirstDelay;
    next_start_ = now;
  }
  return true;
}

void CheckerChild::stop(int signal, bool restart) {
  restart_ = restart;
  if (!pid_) return;
  if (!stopping_ || signal == SIGINT) ::kill(*pid_, signal);
  stopping_ = true;
  kill_at_ = std::min(kill_at_, Clock::now() + kStopGrace);
}

void CheckerChild::kill_overdue(Clock::time_point now) {
  if (!pid_ || !stopping_ || now < kill_at_) return;
  spdlog::warn("health checker {} did not stop in time: SIGKILL", *pid_);
  ::kill(*pid_, SIGKILL);
  kill_at_ = Clock::time_point::max();
}

}  // namespace hipache::process
