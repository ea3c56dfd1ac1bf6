#include "process/supervisor.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "process/checker_child.hpp"
#include "process/heap.hpp"
#include "process/sd_notify.hpp"
#include "process/worker.hpp"
#include "process/worker_child.hpp"
#include "process/worker_process.hpp"

namespace hipache::process {

namespace {

using Clock = WorkerProcess::Clock;
using namespace std::chrono_literals;

// A worker that exits sooner than this after its start counts as failing at start: the next
// one waits (back-off doubling up to kMaxRespawnDelay) so a broken setup does not spin the CPU.
constexpr auto kQuickDeath = 2s;
constexpr auto kFirstRespawnDelay = 100ms;
constexpr auto kMaxRespawnDelay = 10s;
// Beyond gracefulWait, a draining worker gets this long to exit before SIGKILL.
constexpr auto kKillGrace = 5s;
constexpr auto kFastStopGrace = 5s;
constexpr auto kMaxIdleWait = 1s;

class Supervisor {
 public:
  Supervisor(std::string config_path, Config config, std::vector<net::BoundListener> listeners,
             std::shared_ptr<net::ServerTls> tls, MasterStart start)
      : config_path_(std::move(config_path)),
        config_(std::move(config)),
        listeners_(std::move(listeners)),
        tls_(std::move(tls)),
        start_(std::move(start)) {
    try {
      loads_ = std::make_unique<WorkerLoads>();
    } catch (const std::exception& error) {
      spdlog::warn("workers will accept without balancing: {}", error.what());
    }
    metrics_ = metrics::MetricsTable::open(start_.inherited ? start_.inherited->metrics_fd : -1);
    if (start_.inherited) {
      handover_ = start_.inherited->handover;
      adopt_old_generation(*start_.inherited);
    } else {
      try {
        handover_ = proxy::HandoverSocket::create();
      } catch (const std::exception& error) {
        spdlog::warn("replaced workers will close their idle connections: {}", error.what());
      }
    }
  }

  ~Supervisor() {
    if (ready_read_ >= 0) ::close(ready_read_);
    if (ready_write_ >= 0) ::close(ready_write_);
    if (signal_fd_ >= 0) ::close(signal_fd_);
  }
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  int run() {
    sigemptyset(&signals_);
    for (const int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2}) {
      sigaddset(&signals_, sig);
    }
    // Signals are taken synchronously from a signalfd: no handlers, no races with fork().
    sigprocmask(SIG_BLOCK, &signals_, &original_mask_);
    // An upgraded image starts with them blocked already: its workers must not inherit that.
    for (const int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2}) {
      sigdelset(&original_mask_, sig);
    }
    signal_fd_ = ::signalfd(-1, &signals_, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signal_fd_ < 0) {
      spdlog::critical("cannot create a signalfd: {}", std::strerror(errno));
      return 1;
    }
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
      spdlog::critical("cannot create the readiness pipe: {}", std::strerror(errno));
      return 1;
    }
    ready_read_ = pipe_fds[0];
    ready_write_ = pipe_fds[1];

    spdlog::info("master {} starting {} worker(s), heap: {}", ::getpid(), config_.server.workers,
                 heap_allocator());
    awaiting_ready_ = config_.server.workers;
    next_memory_check_ = Clock::now() + memory_interval();
    while (!stopping_ || !workers_.empty() || checker_.running()) {
      wait_for_event();
      reap();
      read_readiness();
      const auto now = Clock::now();
      kill_overdue(now);
      checker_.kill_overdue(now);
      if (stopping_) continue;
      while (serving_count() < config_.server.workers && now >= next_spawn_) spawn();
      checker_.keep_running(wants_checker(), now, [this] { run_checker_child(); });
      if (config_.server.memory_limit_mb > 0 && now >= next_memory_check_) {
        check_memory();
        next_memory_check_ = now + memory_interval();
      }
    }
    net::close_listeners(listeners_);
    spdlog::info("master {} stopped", ::getpid());
    return 0;
  }

 private:
  void wait_for_event() {
    auto wait = std::chrono::duration_cast<std::chrono::nanoseconds>(kMaxIdleWait);
    const auto now = Clock::now();
    const auto until = [&](Clock::time_point t) {
      wait = std::min(wait, std::max<std::chrono::nanoseconds>(t - now, 0ns));
    };
    if (!stopping_ && serving_count() < config_.server.workers) until(next_spawn_);
    if (!stopping_ && config_.server.memory_limit_mb > 0) until(next_memory_check_);
    if (!stopping_) until(checker_.next_start(wants_checker()));
    // Signals arrive through a signalfd, readiness bytes through the pipe: one poll for both.
    pollfd fds[2] = {{signal_fd_, POLLIN, 0}, {ready_read_, POLLIN, 0}};
    const auto wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(wait).count();
    ::poll(fds, 2, static_cast<int>(std::max<long long>(wait_ms, 0)));
    signalfd_siginfo info{};
    while (::read(signal_fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
      handle_signal(static_cast<int>(info.ssi_signo));
    }
  }

  void handle_signal(int sig) {
    switch (sig) {
      case SIGTERM:
        if (stopping_) {
          spdlog::info("master: second SIGTERM, stopping workers now");
          fast_stop();
        } else {
          graceful_stop();
        }
        break;
      case SIGINT:
        spdlog::info("master: SIGINT, stopping workers now");
        stopping_ = true;
        fast_stop();
        break;
      case SIGHUP:
        if (!stopping_) reload();
        break;
      case SIGUSR1:
        spdlog::info("master: SIGUSR1, workers reopen their logs");
        for (const auto& worker : workers_) ::kill(worker.pid, SIGUSR1);
        break;
      case SIGUSR2:
        if (!stopping_) upgrade();
        break;
      default:  // SIGCHLD: reaping follows in the main loop
        break;
    }
  }

  std::chrono::seconds memory_interval() const {
    return std::chrono::seconds(std::max(1u, config_.server.memory_check_interval_s));
  }

  unsigned serving_count() const {
    return static_cast<unsigned>(std::count_if(workers_.begin(), workers_.end(), [](const auto& w) {
      return !w.draining && !w.old_generation;
    }));
  }

  // `cpu`: where a replacement goes (its predecessor's CPU) when workers are bound to CPUs.
  void spawn(std::optional<int> cpu = std::nullopt) {
    const pid_t master = ::getpid();
    const auto slot = loads_ ? loads_->claim() : std::nullopt;
    metrics::WorkerSlot* const counters = metrics_ ? metrics_->reserve() : nullptr;
    if (!config_.server.cpu_affinity || allowed_cpus_.empty()) {
      cpu.reset();
    } else if (!cpu) {
      cpu = least_used_cpu(allowed_cpus_, workers_);
    }
    const pid_t pid = ::fork();
    if (pid < 0) {
      spdlog::error("fork failed: {}", std::strerror(errno));
      if (slot) loads_->release(*slot);
      if (metrics_) metrics_->release(counters);
      schedule_respawn(true);
      return;
    }
    if (pid == 0) {
      const AcceptTurn turn = slot ? AcceptTurn(loads_.get(), *slot) : AcceptTurn();
      run_worker_process(master, original_mask_, {ready_read_, signal_fd_}, cpu, [&, counters] {
        return run_worker(config_, listeners_, *tls_, ready_write_, turn, handover_,
                          {metrics_.get(), counters});
      });
    }
    if (metrics_) metrics_->assign(counters, pid);
    workers_.push_back(WorkerProcess{pid, Clock::now(), slot, cpu});
    if (cpu) {
      spdlog::info("worker {} started on CPU {}", pid, *cpu);
    } else {
      spdlog::info("worker {} started", pid);
    }
  }

  // --- The active health checker's process (server.activeHealthCheck) ---
  bool wants_checker() const { return config_.server.active_health_check.has_value(); }

  [[noreturn]] void run_checker_child() {
    run_checker_process(
        config_, original_mask_, listeners_,
        {ready_read_, ready_write_, signal_fd_, handover_.send_fd, handover_.receive_fd});
  }

  void schedule_respawn(bool failed_at_start) {
    if (!failed_at_start) {
      respawn_delay_ = kFirstRespawnDelay;
      next_spawn_ = Clock::now();
      return;
    }
    next_spawn_ = Clock::now() + respawn_delay_;
    spdlog::warn("worker died at start; next start in {} ms", respawn_delay_.count());
    respawn_delay_ = std::min(respawn_delay_ * 2, std::chrono::milliseconds(kMaxRespawnDelay));
  }

  void reap() {
    for (;;) {
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) return;
      if (checker_.reaped(pid, status)) continue;
      const auto it = std::find_if(workers_.begin(), workers_.end(),
                                   [pid](const auto& w) { return w.pid == pid; });
      if (it == workers_.end()) continue;
      const bool expected = it->draining || stopping_;
      const auto lifetime = Clock::now() - it->started;
      if (expected) {
        spdlog::info("worker {} {}", pid, describe_exit(status));
      } else {
        spdlog::error("worker {} {}; replacing it", pid, describe_exit(status));
        schedule_respawn(lifetime < kQuickDeath);
        if (metrics_) metrics_->count(metrics::MasterCounter::worker_restarts);
      }
      if (it->load_slot) loads_->release(*it->load_slot);
      if (metrics_) metrics_->retire(pid);
      workers_.erase(it);
    }
  }

  void read_readiness() {
    char buffer[64];
    for (;;) {
      const auto n = ::read(ready_read_, buffer, sizeof buffer);
      if (n <= 0) break;
      ready_count_ += static_cast<unsigned>(n);
    }
    if (awaiting_ready_ > 0 && ready_count_ >= awaiting_ready_) {
      spdlog::info("master {}: {} worker(s) ready", ::getpid(), serving_count());
      awaiting_ready_ = 0;
      ready_count_ = 0;
      drain_old_generation();
      sd_notify("READY=1\nSTATUS=serving\nMAINPID=" + std::to_string(::getpid()));
    }
  }

  // `replaced`: a successor serves already, so the worker hands its idle keep-alive connections
  // over (SIGUSR2) instead of closing them (SIGTERM): a close would race the client's next
  // request (proxy/handover.hpp).
  void drain(WorkerProcess& worker, bool replaced) {
    if (worker.draining) return;
    if (!stopping_) make_room_for_a_drain();
    worker.draining = true;
    worker.old_generation = false;
    worker.draining_since = Clock::now();
    // It stops accepting now: the others no longer compare themselves with it.
    if (worker.load_slot) loads_->publish(*worker.load_slot, WorkerLoads::kNotAccepting);
    worker.kill_at =
        Clock::now() + std::chrono::seconds(config_.server.graceful_wait_s) + kKillGrace;
    ::kill(worker.pid, replaced && handover_.valid() ? SIGUSR2 : SIGTERM);
  }

  // Each draining worker keeps its memory for up to gracefulWait, and forced recycling (a worker
  // over memoryLimit again and again) or a burst of reloads would start drains without end. At
  // most server.workers drain at once, so there are never more than twice the configured
  // workers: the oldest draining one is stopped at once to make room.
  void make_room_for_a_drain() {
    const auto limit = std::max(1u, config_.server.workers);
    const auto still_draining = [](const WorkerProcess& w) { return w.draining && !w.killed(); };
    for (;;) {
      const auto count = std::count_if(workers_.begin(), workers_.end(), still_draining);
      if (static_cast<unsigned>(count) < limit) return;
      auto oldest = workers_.end();
      for (auto it = workers_.begin(); it != workers_.end(); ++it) {
        if (still_draining(*it) &&
            (oldest == workers_.end() || it->draining_since < oldest->draining_since)) {
          oldest = it;
        }
      }
      kill_now(*oldest, fmt::format("the oldest of {} draining workers, at most {} drain at once",
                                    count, limit));
    }
  }

  void kill_now(WorkerProcess& worker, const std::string& why) {
    spdlog::warn("worker {} stopped at once (SIGKILL): {}", worker.pid, why);
    ::kill(worker.pid, SIGKILL);
    worker.kill_at = Clock::time_point::max();  // once; reap() removes it
  }

  void kill_overdue(Clock::time_point now) {
    for (auto& worker : workers_) {
      if (worker.draining && now >= worker.kill_at) kill_now(worker, "did not stop in time");
    }
  }

  void check_memory() {
    const auto limit = static_cast<std::size_t>(config_.server.memory_limit_mb) * 1024 * 1024;
    // A draining worker still growing (a client feeding it) would hold that memory for up to
    // gracefulWait, beside its replacement: past twice the limit it goes at once. Checked before
    // the serving ones, so a drain started below is first checked a whole interval later.
    for (auto& worker : workers_) {
      if (!worker.draining || worker.killed()) continue;
      const auto rss = resident_bytes(worker.pid);
      if (rss <= 2 * limit) continue;
      kill_now(worker, fmt::format("draining, uses {} MB, over twice the {} MB limit",
                                   rss / (1024 * 1024), config_.server.memory_limit_mb));
    }
    // Index loop: spawn() appends to workers_.
    const auto count = workers_.size();
    for (std::size_t i = 0; i < count; ++i) {
      if (workers_[i].draining || workers_[i].old_generation) continue;
      const auto rss = resident_bytes(workers_[i].pid);
      if (rss <= limit) continue;
      spdlog::warn("worker {} uses {} MB, over the {} MB limit: replacing it", workers_[i].pid,
                   rss / (1024 * 1024), config_.server.memory_limit_mb);
      const pid_t old_pid = workers_[i].pid;
      if (metrics_) metrics_->count(metrics::MasterCounter::worker_recycles);
      // The replacement first (the listening sockets never lack an acceptor), on the same CPU.
      spawn(workers_[i].cpu);
      const auto old = std::find_if(workers_.begin(), workers_.end(),
                                    [old_pid](const auto& w) { return w.pid == old_pid; });
      if (old != workers_.end()) drain(*old, true);
    }
  }

  void graceful_stop() {
    spdlog::info("master: SIGTERM, draining workers (at most {} s)",
                 config_.server.graceful_wait_s);
    stopping_ = true;
    sd_notify("STOPPING=1");
    checker_.stop(SIGTERM, false);
    for (auto& worker : workers_) drain(worker, false);
    net::close_listeners(listeners_);  // new clients are refused, not queued for nobody
  }

  void fast_stop() {
    sd_notify("STOPPING=1");
    checker_.stop(SIGINT, false);
    net::close_listeners(listeners_);
    const auto deadline = Clock::now() + kFastStopGrace;
    for (auto& worker : workers_) {
      ::kill(worker.pid, SIGINT);
      if (!worker.draining || worker.kill_at > deadline) worker.kill_at = deadline;
      worker.draining = true;
    }
  }

  void reload() {
    spdlog::info("master: SIGHUP, reloading {}", config_path_);
    Config fresh;
    std::shared_ptr<net::ServerTls> fresh_tls;
    try {
      fresh = load_config(config_path_);
      if (!same_listeners(config_, fresh)) {
        // The sockets in hand are the ones served: binding again may need root.
        fresh.warnings.push_back(
            "reload: listen addresses changed; they take effect on restart only");
        fresh.listeners = config_.listeners;
      }
      // Certificates are re-read too (renewals, certDir changes); ticket keys carry over.
      fresh_tls = net::make_server_tls(fresh, tls_.get(), fresh.warnings);
    } catch (const std::exception& error) {
      // Anything (an unreadable certificate directory too) refuses the reload, never the master.
      spdlog::error("reload refused, still serving with the previous configuration: {}",
                    error.what());
      return;
    }
    for (const auto& warning : fresh.warnings) spdlog::warn("{}", warning);
    if (fresh.user != config_.user || fresh.group != config_.group) {
      spdlog::warn("reload: user/group changed; they take effect on restart only");
    }
    sd_notify("RELOADING=1");
    if (metrics_) metrics_->count(metrics::MasterCounter::reloads);
    config_ = std::move(fresh);
    checker_.stop(SIGTERM, true);  // started again with the new configuration
    tls_ = std::move(fresh_tls);
    std::vector<pid_t> old;
    for (const auto& worker : workers_) {
      if (!worker.draining) old.push_back(worker.pid);
    }
    awaiting_ready_ = config_.server.workers;
    ready_count_ = 0;
    for (unsigned i = 0; i < config_.server.workers; ++i) spawn();
    for (auto& worker : workers_) {
      if (std::find(old.begin(), old.end(), worker.pid) != old.end()) drain(worker, true);
    }
  }

  // SIGUSR2: re-execute the binary file in place (process/upgrade.hpp). Refused, with the old
  // image serving on, when the listen addresses changed or the new binary fails its check.
  void upgrade() {
    Inheritance inheritance{listeners_, handover_, tls_->ticket_keys, {}, {}};
    inheritance.metrics_fd = metrics_ ? metrics_->fd() : -1;
    for (const auto& worker : workers_) {
      (worker.draining ? inheritance.draining_workers : inheritance.serving_workers)
          .push_back(worker.pid);
    }
    // The new image starts its own checker; this one lets its locks go and is reaped there.
    if (const auto checker = checker_.pid()) {
      checker_.stop(SIGTERM, true);
      inheritance.draining_workers.push_back(*checker);
    }
    const auto refused = upgrade_in_place(start_, config_path_, config_, inheritance);
    spdlog::error("upgrade refused, still serving with the running binary: {}", refused);
  }

  // The new image after an upgrade: the previous image's workers are children of this process
  // still. Serving ones go on until this image's workers are ready.
  void adopt_old_generation(const Inheritance& inherited) {
    const auto adopted = previous_image_workers(
        inherited, std::chrono::seconds(config_.server.graceful_wait_s) + kKillGrace);
    workers_.insert(workers_.end(), adopted.begin(), adopted.end());
    spdlog::info(
        "master {}: upgraded in place to {}; {} worker(s) of the previous binary serve "
        "until the new ones are ready",
        ::getpid(), start_.binary, inherited.serving_workers.size());
  }

  void drain_old_generation() {
    std::size_t old = 0;
    for (auto& worker : workers_) {
      if (!worker.old_generation) continue;
      drain(worker, true);
      ++old;
    }
    if (start_.inherited && !upgrade_reported_) {
      upgrade_reported_ = true;
      spdlog::info("master {}: upgrade complete, {} worker(s) of {} ready, {} old one(s) draining",
                   ::getpid(), serving_count(), start_.binary, old);
    }
  }

  std::string config_path_;
  Config config_;
  std::vector<net::BoundListener> listeners_;
  std::shared_ptr<net::ServerTls> tls_;
  MasterStart start_;
  proxy::HandoverSocket handover_;  // inherited by every worker (proxy/handover.hpp)
  bool upgrade_reported_ = false;
  std::unique_ptr<WorkerLoads> loads_;              // null: could not be mapped
  std::unique_ptr<metrics::MetricsTable> metrics_;  // null: could not be made
  std::vector<int> allowed_cpus_ = allowed_cpus();  // the master's, as it started
  std::vector<WorkerProcess> workers_;
  CheckerChild checker_;
  sigset_t signals_{};
  sigset_t original_mask_{};
  int signal_fd_ = -1;
  int ready_read_ = -1;
  int ready_write_ = -1;
  unsigned ready_count_ = 0;
  unsigned awaiting_ready_ = 0;
  bool stopping_ = false;
  Clock::time_point next_spawn_{};
  Clock::time_point next_memory_check_{};
  std::chrono::milliseconds respawn_delay_{kFirstRespawnDelay};
};

}  // namespace

int run_supervisor(const std::string& config_path, Config config,
                   std::vector<net::BoundListener> listeners, std::shared_ptr<net::ServerTls> tls,
                   MasterStart start) {
  Supervisor supervisor(config_path, std::move(config), std::move(listeners), std::move(tls),
                        std::move(start));
  return supervisor.run();
}

}  // namespace hipache::process
