// The active health checker's process as the master keeps it (server.activeHealthCheck): one
// per node, apart from the workers (it serves no client, and a worker respawned or recycled
// must not interrupt the checks), restarted with back-off when it dies, stopped with the
// workers, and restarted on SIGHUP with the new configuration. The master's side only: the
// checker itself is health/checker_process.hpp.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <initializer_list>
#include <optional>
#include <vector>

#include "hipache/config.hpp"
#include "net/listeners.hpp"

namespace hipache::process {

// The checker process's body, in the forked child: back to `original_mask` (the signals it
// handles stay blocked until it handles them), ended with its master, without the master's
// listening sockets and other descriptors `close_fds` (-1 entries skipped).
[[noreturn]] void run_checker_process(const Config& config, const sigset_t& original_mask,
                                      std::vector<net::BoundListener>& listeners,
                                      std::initializer_list<int> close_fds);

class CheckerChild {
 public:
  using Clock = std::chrono::steady_clock;

  // Forks `child` (which never returns) when `wanted`, none runs and its back-off has passed.
  void keep_running(bool wanted, Clock::time_point now, const std::function<void()>& child);
  // When keep_running() next has something to do (Clock::time_point::max(): nothing).
  Clock::time_point next_start(bool wanted) const;

  // Whether `pid` was the checker; then it is forgotten (and restarted later unless stopping).
  bool reaped(pid_t pid, int status);

  // SIGTERM (lets its locks go) or SIGINT; it is killed if still there after a grace period.
  // With `restart`, keep_running() starts a new one once it is gone.
  void stop(int signal, bool restart);
  void kill_overdue(Clock::time_point now);

  bool running() const { return pid_.has_value(); }
  std::optional<pid_t> pid() const { return pid_; }

 private:
  std::optional<pid_t> pid_;
  Clock::time_point started_{};
  Clock::time_point next_start_{};
  Clock::time_point kill_at_ = Clock::time_point::max();
  std::chrono::milliseconds delay_{100};
  bool stopping_ = false;  // told to stop: its exit is expected
  bool restart_ = true;    // once stopped, start a new one
};

}  // namespace hipache::process
