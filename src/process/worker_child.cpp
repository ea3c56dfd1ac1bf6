#include "process/worker_child.hpp"

#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <exception>

#include "process/exit_child.hpp"
#include "process/worker_process.hpp"

namespace hipache::process {

void run_worker_process(pid_t master, const sigset_t& original_mask,
                        std::initializer_list<int> close_fds, std::optional<int> cpu,
                        const std::function<int()>& serve) {
  // Back to the original mask, except the signals the worker handles: they stay blocked (and
  // pending) until run_worker has its handlers in place.
  sigset_t mask = original_mask;
  for (const int sig : {SIGTERM, SIGINT, SIGUSR1, SIGUSR2}) sigaddset(&mask, sig);
  sigprocmask(SIG_SETMASK, &mask, nullptr);
  // A worker must not outlive its master (it would hold the ports with nobody to manage it).
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != master) ::_exit(0);
  for (const int fd : close_fds) ::close(fd);
  if (cpu) bind_to_cpu(*cpu);
  int code = 1;
  try {
    code = serve();
  } catch (const std::exception& error) {
    spdlog::critical("worker {} failed: {}", ::getpid(), error.what());
  }
  spdlog::default_logger()->flush();
  exit_child(code);  // never run the master's destructors in a child
}

}  // namespace hipache::process
